package collectors_test

import (
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
)

func TestParseTableName(t *testing.T) {
	for in, want := range map[string]collectors.TableName{
		"orders":                    {Schema: "public", Table: "orders"},
		"Sales.Orders":              {Schema: "sales", Table: "orders"},
		`"My Schema"."Orders.2024"`: {Schema: "My Schema", Table: "Orders.2024"},
		`etl."quote""d"`:            {Schema: "etl", Table: `quote"d`},
		"  public.orders ":          {Schema: "public", Table: "orders"},
	} {
		got, err := collectors.ParseTableName(in)
		if err != nil || got != want {
			t.Errorf("ParseTableName(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a.b.c", `"open`, "a..b", ".orders", "orders.", "my table", `a"b`} {
		if got, err := collectors.ParseTableName(bad); err == nil {
			t.Errorf("ParseTableName(%q) = %+v, want an error", bad, got)
		}
	}
}
