package report

import (
	"fmt"
	"strings"
	"testing"
)

// TestAlignPlans: two plans side by side face their common nodes and mark the others, in
// the order of both plans.
func TestAlignPlans(t *testing.T) {
	run := []planNode{{0, "Aggregate"}, {1, "Seq Scan on lookup"}}
	base := []planNode{{0, "Aggregate"}, {1, "Bitmap Heap Scan on lookup"}, {2, "Bitmap Index Scan using lookup_k"}}
	var got []string
	for _, r := range alignPlans(run, base) {
		side := func(n *planNode) string {
			if n == nil {
				return "-"
			}
			return fmt.Sprintf("%d:%s", n.Depth, n.Label)
		}
		got = append(got, fmt.Sprintf("%s | %s | %v", side(r.Run), side(r.Baseline), r.Differs))
	}
	want := []string{
		"0:Aggregate | 0:Aggregate | false",
		"1:Seq Scan on lookup | - | true",
		"- | 1:Bitmap Heap Scan on lookup | true",
		"- | 2:Bitmap Index Scan using lookup_k | true",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("aligned:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
