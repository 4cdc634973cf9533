package collectors

import (
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	lockSamplesDesc = newDesc("lock_samples_total",
		"Lock samples (pg_blocking_pids()) the wait sampler took: one per wait sample that saw a client session waiting on a heavyweight lock, none while no session waits.")
	lockEpisodesDesc = newDesc("lock_wait_episodes_total",
		"Lock waits the wait sampler saw end: each wait of a session on a heavyweight lock, from pg_locks.waitstart until a wait sample no longer saw it waiting.")
)

// LockEpisode is one wait of one session on a heavyweight lock, followed from its start to
// its end: the wait sampler takes a lock sample (SQLLockWaits) whenever it sees a client
// session waiting on a lock, so a wait of a sampler interval or more is seen with its
// blocker, however seldom the sample tier collects. Times are the server's clock.
type LockEpisode struct {
	BlockedPID          int32
	BlockedBackendStart *time.Time // with the pid, tells a reused pid apart
	BlockedUser         *string
	BlockedApp          *string
	BlockedQueryPreview *string
	// The blocker is the first session seen blocking the wait (the lowest pid where several
	// did at once); BlockingPIDs are every session seen blocking it, in the order seen.
	BlockingPID          int32
	BlockingUser         *string
	BlockingApp          *string
	BlockingQueryPreview *string
	// BlockingState is the blocker's state as first seen blocking the wait, or idle (in a
	// transaction: holding the lock between statements) where it was seen so later; its query
	// is the one it showed then.
	BlockingState *string
	BlockingPIDs  []int32
	// BlockingBatch is the batch whose own session the blocker was ("": none): a batch's
	// sessions waiting for each other.
	BlockingBatch  string
	LockType       *string
	LockedRelation *string
	LockedObject   *string
	Datname        *string
	StartedAt      time.Time // pg_locks.waitstart
	LastSeenAt     time.Time // the last lock sample that saw it waiting
	// EndedAt is midway between LastSeenAt and the first wait sample that no longer saw it
	// waiting: off by at most half the time between them. Where the session was still waiting
	// when the exporter stopped (StillWaiting), it is LastSeenAt: the lock sample taken as it
	// stopped.
	EndedAt      time.Time
	StillWaiting bool
}

// Duration is the wait's length, from pg_locks.waitstart to the estimated end.
func (e LockEpisode) Duration() time.Duration { return e.EndedAt.Sub(e.StartedAt) }

// episodeKey is one wait: a session (pid and backend_start) and the wait's start.
type episodeKey struct {
	pid                     int32
	backendStart, waitStart int64 // Unix microseconds; backendStart 0 where unknown
}

// openEpisode is a wait seen going on, with the exporter's clock (monotonic) at the lock
// sample that last saw it: the end is estimated by the exporter's clock, the server's is
// not read when nobody waits.
type openEpisode struct {
	LockEpisode
	seen time.Time
}

// lockEpisodes follows lock waits across the wait sampler's lock samples.
type lockEpisodes struct {
	open     map[episodeKey]*openEpisode
	finished []LockEpisode // since the last take
	samples  int64         // lock samples taken
	ended    int64         // episodes finished
}

func newLockEpisodes() *lockEpisodes { return &lockEpisodes{open: map[episodeKey]*openEpisode{}} }

// observe books a lock sample that finished at at (the exporter's clock): the waits it shows
// begin or go on, and the open ones it does not show have ended. nil: a wait sample at at saw
// no session waiting on a lock. blockingBatch names the batch of a blocking pid, where it has one.
func (l *lockEpisodes) observe(waits []LockWait, blockingBatch map[int32]string, at time.Time) {
	current := make(map[episodeKey]bool, len(waits))
	for _, w := range waits {
		if w.WaitStart == nil || w.BlockedDuration == nil {
			continue // the server sets waitstart an instant after the wait began: the next sample has it
		}
		k := episodeKey{pid: w.BlockedPID, waitStart: w.WaitStart.UnixMicro()}
		if w.BlockedBackendStart != nil {
			k.backendStart = w.BlockedBackendStart.UnixMicro()
		}
		e := l.open[k]
		if e == nil {
			e = &openEpisode{LockEpisode: LockEpisode{BlockedPID: w.BlockedPID, BlockedBackendStart: w.BlockedBackendStart,
				BlockedUser: w.BlockedUser, BlockedApp: w.BlockedApp, BlockedQueryPreview: w.BlockedQueryPreview,
				BlockingPID: w.BlockingPID, BlockingUser: w.BlockingUser, BlockingApp: w.BlockingApp,
				BlockingQueryPreview: w.BlockingQueryPreview, BlockingState: w.BlockingState,
				LockType: w.LockType, LockedRelation: w.LockedRelation, LockedObject: w.LockedObject,
				Datname: w.Datname, StartedAt: *w.WaitStart}}
			l.open[k] = e
		}
		// A holder once seen idle (in a transaction) holds the lock between statements: that is
		// what it was doing, though the sighting as it lets go may catch its COMMIT running.
		if w.BlockingPID == e.BlockingPID && !idle(e.BlockingState) && idle(w.BlockingState) {
			e.BlockingState, e.BlockingQueryPreview = w.BlockingState, w.BlockingQueryPreview
		}
		if e.BlockingBatch == "" { // a run's sessions are known from the tracker's next read on
			e.BlockingBatch = blockingBatch[e.BlockingPID]
		}
		// waited is clock_timestamp() - waitstart: the server's clock at the sample.
		e.LastSeenAt, e.seen = w.WaitStart.Add(*w.BlockedDuration), at
		if !slices.Contains(e.BlockingPIDs, w.BlockingPID) {
			e.BlockingPIDs = append(e.BlockingPIDs, w.BlockingPID)
		}
		current[k] = true
	}
	for k, e := range l.open {
		if !current[k] {
			e.EndedAt = e.LastSeenAt.Add(at.Sub(e.seen) / 2)
			l.finish(k, e)
		}
	}
}

// idle tells a session between statements (pg_stat_activity.state idle, idle in transaction).
func idle(state *string) bool { return state != nil && strings.HasPrefix(*state, "idle") }

// stop ends the waits still open as still waiting, where last seen, and returns how many
// episodes wait to be taken.
func (l *lockEpisodes) stop() int {
	for k, e := range l.open {
		e.EndedAt, e.StillWaiting = e.LastSeenAt, true
		l.finish(k, e)
	}
	return len(l.finished)
}

func (l *lockEpisodes) finish(k episodeKey, e *openEpisode) {
	delete(l.open, k)
	l.finished = append(l.finished, e.LockEpisode)
	l.ended++
}

// take returns the episodes finished since the previous call.
func (l *lockEpisodes) take() []LockEpisode {
	out := l.finished
	l.finished = nil
	return out
}

func (l *lockEpisodes) emit(ch chan<- prometheus.Metric) {
	counter(ch, lockSamplesDesc, float64(l.samples))
	counter(ch, lockEpisodesDesc, float64(l.ended))
}
