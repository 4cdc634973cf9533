package collectors

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestJitteredSamplingUnbiasedAtEveryPhase: the wait sampler and the sample tier, scheduled as
// the runner schedules them, read a periodic workload (5 sessions waiting 40% of each period,
// the period equal to the interval: a job that fires on the second at --collector.waits.interval=1s)
// at ten phase offsets, each booking span × sessions seen at every run. At a fixed phase every
// offset books either nothing or 2.5 times the truth. Stratified jittered samples hit the wait
// independently with probability d = 0.4, so N samples book the truth with a relative standard
// deviation of sqrt((1-d)/(d·N)), 12% for N = 100; each offset must be within 4 of those
// (a false failure once in 15,000 runs), which rules out nothing and any multiple.
func TestJitteredSamplingUnbiasedAtEveryPhase(t *testing.T) {
	const interval, samples, sessions, duty, offsets = 100 * time.Millisecond, 100, 5, 0.4, 10
	r := NewRunner(RunnerOptions{Selection: AllEnabled(), SampleEvery: interval, SnapshotEvery: time.Hour, WaitSampleEvery: interval})
	scheds := r.schedules()
	for name, s := range map[string]schedule{"waits": scheds[2], "sample tier": scheds[0]} {
		if s.instant == nil {
			t.Errorf("%s: not jittered", name)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var wg sync.WaitGroup
			for i := range offsets {
				wg.Add(1)
				go func() {
					defer wg.Done()
					phase := time.Duration(i) * interval / offsets
					start := time.Now()
					var booked float64
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					n := 0
					s.trigger = nil
					s.run = func(_ context.Context, span time.Duration) error {
						if (time.Since(start)+phase)%interval < time.Duration(duty*float64(interval)) {
							booked += sessions * span.Seconds()
						}
						if n++; n == samples {
							cancel()
						}
						return nil
					}
					every(ctx, s)
					truth := sessions * duty * float64(samples) * interval.Seconds()
					bound := 4 * math.Sqrt((1-duty)/(duty*samples))
					if e := booked/truth - 1; math.Abs(e) > bound {
						t.Errorf("phase %s: booked %.2f session-seconds, truth %.2f (%+.0f%%, bound ±%.0f%%)", phase, booked, truth, 100*e, 100*bound)
					}
				}()
			}
			wg.Wait()
		})
	}
}

// TestOverrunningCollectionIsSkippedNotStacked: a collection that takes 1.3 intervals never
// overlaps the next, and the interval it overran is skipped: the next run starts at the first
// interval boundary after it ends, never back to back with it, and stands for at most two
// intervals.
func TestOverrunningCollectionIsSkippedNotStacked(t *testing.T) {
	const interval, took, total = 100 * time.Millisecond, 130 * time.Millisecond, 1500 * time.Millisecond
	var mu sync.Mutex
	running, overlapped := 0, false
	var starts []time.Time
	var spans []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), total)
	defer cancel()
	every(ctx, schedule{interval: func() time.Duration { return interval }, run: func(_ context.Context, span time.Duration) error {
		mu.Lock()
		running++
		overlapped = overlapped || running > 1
		starts = append(starts, time.Now())
		spans = append(spans, span)
		mu.Unlock()
		time.Sleep(took)
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	}})
	if overlapped || len(starts) < 3 {
		t.Fatalf("%d runs (overlapping: %v), want at least 3, one at a time", len(starts), overlapped)
	}
	for i := 1; i < len(starts); i++ {
		// A run that began at a boundary and ended 1.3 intervals later: the next boundary is the
		// second after its start, 2 intervals, less however late the run before started on a
		// loaded machine; back to back would be 1.3 intervals.
		if gap := starts[i].Sub(starts[i-1]); gap < took+interval/4 {
			t.Errorf("run %d started %s after the one before, want the overrun interval skipped (at least %s)", i, gap, took+interval/4)
		}
	}
	for _, s := range spans {
		if s > 2*interval {
			t.Errorf("a run stood for %s, more than two intervals (%s)", s, 2*interval)
		}
	}
}

// TestPaceFollowsBatches: the wait sampler reads every RunWaitSampleEvery while a batch runs
// (the tracker says so) and at WaitSampleEvery otherwise, each reading standing for an
// interval of the pace it was taken at: the seconds booked follow the time, whatever the pace.
func TestPaceFollowsBatches(t *testing.T) {
	r := NewRunner(RunnerOptions{Selection: AllEnabled(), WaitSampleEvery: 200 * time.Millisecond, RunWaitSampleEvery: 50 * time.Millisecond})
	w := r.Waits()
	if w.Interval() != 200*time.Millisecond {
		t.Fatalf("interval without a batch %s, want 200ms", w.Interval())
	}
	s := r.schedules()[2]
	var mu sync.Mutex
	var booked [2]time.Duration // without, with a batch running
	var n [2]int
	s.run = func(_ context.Context, span time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		i := 0
		if w.batchRunning.Load() {
			i = 1
		}
		booked[i] += span
		n[i]++
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); every(ctx, s) }()
	time.Sleep(2 * time.Second)
	w.BatchRunning(true)
	time.Sleep(2 * time.Second)
	w.BatchRunning(false)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	// 2 s at each pace: 10 readings of 200 ms, then about 40 of 50 ms (one 200 ms stratum may
	// still be waited out when the pace changes).
	if n[0] < 8 || n[0] > 12 || n[1] < 30 || n[1] > 42 {
		t.Errorf("readings: %d without a batch, %d with one; want about 10 and 40", n[0], n[1])
	}
	for i, d := range booked {
		if d < 1600*time.Millisecond || d > 2400*time.Millisecond {
			t.Errorf("pace %d: %s booked over 2 s", i, d)
		}
	}
}

// TestNewPaceLosesNoTime: a batch begins 0.6 s into a 1 s stratum and speeds the wait
// sampler up to 100 ms; the readings must book the time that passed.
//   - The stratum's reading due later (0.9 s): it stands for the 0.6 s before the change, and
//     the new pace begins at once. Restarting the strata from the stratum's start booked 100 ms
//     of those 0.6 s (1.5 s over 2 s); waiting for the stratum's end read nothing at the new
//     pace for 0.4 s.
//   - The stratum's reading done before (0.5 s) but running until 1.1 s: the next stratum,
//     which it overran, goes with the first reading at the new pace (2 s over 3 s where it was
//     dropped).
func TestNewPaceLosesNoTime(t *testing.T) {
	const slow, fast = time.Second, 100 * time.Millisecond
	for _, c := range []struct {
		name      string
		at        float64       // the readings' instant in their stratum
		firstTook time.Duration // how long the first reading takes
		total     time.Duration
		fastBy    time.Duration // a reading at the new pace by then
	}{{"reading due after the change", 0.9, 0, 2 * time.Second, 600*time.Millisecond + 2*fast},
		{"reading overruns its stratum", 0.5, 600 * time.Millisecond, 3 * time.Second, 2*time.Second + 2*fast}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var pace atomic.Int64
			pace.Store(int64(slow))
			repace := make(chan struct{}, 1)
			var mu sync.Mutex
			var booked time.Duration
			var firstFast time.Time
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			start := time.Now()
			go func() {
				defer close(done)
				n := 0
				every(ctx, schedule{interval: func() time.Duration { return time.Duration(pace.Load()) }, repace: repace,
					instant: func(interval time.Duration) time.Duration { return time.Duration(c.at * float64(interval)) },
					run: func(_ context.Context, span time.Duration) error {
						if n++; n == 1 {
							time.Sleep(c.firstTook)
						}
						mu.Lock()
						booked += span
						if span == fast && firstFast.IsZero() {
							firstFast = time.Now()
						}
						mu.Unlock()
						return nil
					}})
			}()
			time.Sleep(time.Until(start.Add(600 * time.Millisecond)))
			pace.Store(int64(fast))
			repace <- struct{}{}
			time.Sleep(time.Until(start.Add(c.total)))
			cancel()
			<-done
			elapsed := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			// Each reading books its whole stratum, begun by the end: up to one interval more
			// than the time that passed; a loaded machine may lose up to three (a reading later
			// than two intervals stands for two).
			if booked < elapsed-3*fast || booked > elapsed+fast {
				t.Errorf("%s booked over %s, with the pace changed from %s to %s 0.6 s into the first stratum; want the time that passed", booked, elapsed.Round(time.Millisecond), slow, fast)
			}
			if firstFast.IsZero() || firstFast.Sub(start) > c.fastBy {
				t.Errorf("the first reading at the new pace at %s, want one by %s", firstFast.Sub(start).Round(time.Millisecond), c.fastBy)
			}
		})
	}
}

// TestTriggersKeepTheSchedule: a batch triggers a collection a second while it runs; after a
// burst of triggers within a few intervals, the scheduled collections go on within two
// intervals of the last, as before the burst: each trigger stands for the interval it ran in,
// not for one more of the schedule's (which pushed the next scheduled run an interval further
// away per trigger: after an hour's batch, none for 30 hours at the default 30 s).
func TestTriggersKeepTheSchedule(t *testing.T) {
	const interval = 200 * time.Millisecond
	trigger := make(chan struct{}, 1)
	var mu sync.Mutex
	var runs []time.Time
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		every(ctx, schedule{interval: func() time.Duration { return interval }, instant: randomInstant, trigger: trigger,
			run: func(context.Context, time.Duration) error {
				mu.Lock()
				runs = append(runs, time.Now())
				mu.Unlock()
				return nil
			}})
	}()
	for range 30 {
		select {
		case trigger <- struct{}{}:
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	burstEnd := time.Now()
	time.Sleep(6 * interval)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	var after []time.Time
	for _, r := range runs {
		if r.After(burstEnd) {
			after = append(after, r)
		}
	}
	// Scheduled runs in the 6 intervals after the burst: one an interval, less the first
	// (at most two intervals away) and a loaded machine's lateness.
	if len(after) < 3 {
		t.Errorf("%d scheduled runs in the %s after a burst of triggers, want one an interval (%s)", len(after), 6*interval, interval)
	}
}
