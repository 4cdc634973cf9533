package collectors

import (
	"testing"
	"time"
)

// TestLockEpisodesAcrossSamples: a wait is one episode across the lock samples that see it,
// however many blockers they show; a new waitstart or a new backend on the same pid is a new
// episode; the end is midway between the last sample that saw the wait and the first that did
// not; a wait open at stop is still waiting, ended where last seen. A row without waitstart
// (an instant after the wait began) starts nothing.
func TestLockEpisodesAcrossSamples(t *testing.T) {
	server := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC) // the server's clock
	local := time.Now()                                   // the exporter's, a second per sample
	at := func(s int) time.Time { return local.Add(time.Duration(s) * time.Second) }
	backend, reused := server.Add(-time.Hour), server.Add(-time.Minute)
	row := func(pid, blocker int32, started *time.Time, waitStart time.Time, sample int) LockWait {
		waited := server.Add(time.Duration(sample) * time.Second).Sub(waitStart)
		return LockWait{BlockedPID: pid, BlockingPID: blocker, BlockedBackendStart: started, WaitStart: &waitStart, BlockedDuration: &waited}
	}
	l := newLockEpisodes()
	// pid 7 waits from 0.5 s behind 20, then 21 as well; pid 8 from 1 s; a new wait of pid 8's
	// backend is not there yet (no waitstart).
	l.observe([]LockWait{row(7, 20, &backend, server.Add(500*time.Millisecond), 1), row(8, 30, &backend, server.Add(time.Second), 1),
		{BlockedPID: 9, BlockingPID: 30}}, nil, at(1))
	l.observe([]LockWait{row(7, 20, &backend, server.Add(500*time.Millisecond), 2), row(7, 21, &backend, server.Add(500*time.Millisecond), 2),
		row(8, 30, &backend, server.Add(time.Second), 2)}, nil, at(2))
	// pid 8 is a new backend now (the old one ended; its pid was reused), waiting again.
	l.observe([]LockWait{row(7, 20, &backend, server.Add(500*time.Millisecond), 3), row(8, 30, &reused, server.Add(2500*time.Millisecond), 3)}, nil, at(3))
	// Nobody waits at 4 s: pid 7's wait ended between 3 and 4 s.
	l.observe(nil, nil, at(4))
	l.observe([]LockWait{row(7, 22, &backend, server.Add(4500*time.Millisecond), 5)}, nil, at(5))
	if n := l.stop(); n != 4 {
		t.Fatalf("%d episodes to take, want 4", n)
	}
	got := l.take()
	if len(got) != 4 || l.ended != 4 || len(l.take()) != 0 {
		t.Fatalf("episodes %+v, ended %d", got, l.ended)
	}
	type want struct {
		pid          int32
		backend      time.Time
		blockers     []int32
		start, end   float64 // seconds on the server's clock
		stillWaiting bool
	}
	wants := []want{
		{8, backend, []int32{30}, 1, 2.5, false},  // seen at 2, gone at 3
		{8, reused, []int32{30}, 2.5, 3.5, false}, // seen at 3, gone at 4
		{7, backend, []int32{20, 21}, 0.5, 3.5, false},
		{7, backend, []int32{22}, 4.5, 5, true},
	}
	for _, w := range wants {
		found := false
		for _, e := range got {
			if e.BlockedPID != w.pid || !e.BlockedBackendStart.Equal(w.backend) || !e.StartedAt.Equal(server.Add(time.Duration(w.start*float64(time.Second)))) {
				continue
			}
			found = true
			if e.BlockingPID != w.blockers[0] || len(e.BlockingPIDs) != len(w.blockers) || e.BlockingPIDs[len(e.BlockingPIDs)-1] != w.blockers[len(w.blockers)-1] ||
				!e.EndedAt.Equal(server.Add(time.Duration(w.end*float64(time.Second)))) || e.StillWaiting != w.stillWaiting {
				t.Errorf("episode %+v, want %+v", e, w)
			}
		}
		if !found {
			t.Errorf("no episode %+v in %+v", w, got)
		}
	}
}

// TestLockEpisodeHolderSeenIdle: a holder seen idle in a transaction while the wait lasts is
// idle in a transaction, with the statement it showed then, though the last sighting caught
// its COMMIT running; one only seen running keeps its first statement.
func TestLockEpisodeHolderSeenIdle(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	text := func(s string) *string { return &s }
	row := func(blocker int32, state, query string, second int) LockWait {
		waited := time.Duration(second) * time.Second
		return LockWait{BlockedPID: 7, BlockingPID: blocker, WaitStart: &start, BlockedDuration: &waited,
			BlockingState: text(state), BlockingQueryPreview: text(query)}
	}
	l := newLockEpisodes()
	now := time.Now()
	for i, w := range []LockWait{row(20, "active", "UPDATE t SET v = $1", 1), row(20, "idle in transaction", "UPDATE t SET v = $1", 2),
		row(20, "active", "COMMIT", 3)} {
		l.observe([]LockWait{w}, nil, now.Add(time.Duration(i)*time.Second))
	}
	l.observe(nil, nil, now.Add(4*time.Second))
	for i, w := range []LockWait{row(21, "active", "LOCK TABLE t", 5), row(21, "active", "SELECT pg_sleep($1)", 6)} {
		w.WaitStart = &now // another wait
		l.observe([]LockWait{w}, nil, now.Add(time.Duration(5+i)*time.Second))
	}
	l.stop()
	got := l.take()
	if len(got) != 2 || *got[0].BlockingState != "idle in transaction" || *got[0].BlockingQueryPreview != "UPDATE t SET v = $1" ||
		*got[1].BlockingState != "active" || *got[1].BlockingQueryPreview != "LOCK TABLE t" {
		for _, e := range got {
			t.Logf("episode behind %d: %s, %s", e.BlockingPID, *e.BlockingState, *e.BlockingQueryPreview)
		}
		t.Errorf("want the first holder idle in transaction after its UPDATE, the second running its LOCK TABLE")
	}
}
