package collectors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("plans", TierSnapshot, true,
		"Plans of the batch's statements that auto_explain logged, read from the server's log (--plans.source; off by default)",
		func(cfg Config) Collector {
			if cfg.Plans.Source == "" || cfg.Plans.Source == PlansOff {
				return nil
			}
			return &plansCollector{cfg: cfg.Plans.WithDefaults(), logger: cfg.Logger, offsets: map[string]int64{}}
		})
}

// The sources of --plans.source.
const (
	PlansOff  = "off"
	PlansFile = "file" // the log files, read where the exporter runs on the server's host
	PlansSQL  = "sql"  // pg_read_file, where the exporter's role is granted it
)

// PlansConfig is what --plans.* set; a zero field is the flag's default.
type PlansConfig struct {
	// Source is where the server's log is read: PlansOff (""), PlansFile or PlansSQL.
	Source string
	// LogPath is, for PlansFile, the server's log directory on this host or one log file
	// (logging_collector off, stderr sent to a file). PlansSQL reads log_directory.
	LogPath string
	// ReadBytes bounds what one collection reads of each log file (0: DefaultPlanReadBytes):
	// a longer log is read on at the next.
	ReadBytes int64
}

// DefaultPlanReadBytes is what a collection reads of a log file at most.
const DefaultPlanReadBytes = 8 << 20

// WithDefaults fills the zero fields with the flags' defaults.
func (c PlansConfig) WithDefaults() PlansConfig {
	if c.ReadBytes <= 0 {
		c.ReadBytes = DefaultPlanReadBytes
	}
	return c
}

var (
	plansDesc     = newDesc("plans_logged_total", "Plans auto_explain logged that the exporter read from the server's log.")
	planBytesDesc = newDesc("plans_log_read_bytes_total", "Bytes of the server's log the exporter read for plans.")
)

// plansCollector reads what the server's log grew by since the previous collection and keeps
// the plans auto_explain wrote in json. Only new lines are read: the first collection starts
// at each file's end, and a file that appears later (rotation) from its start.
type plansCollector struct {
	cfg    PlansConfig
	logger *slog.Logger
	// offsets is how far each log file was read (its name in the directory).
	offsets map[string]int64
	started bool
	// skipping: the previous read of the file ended inside a line longer than ReadBytes,
	// whose rest is skipped.
	skipping      map[string]bool
	logged, bytes float64
}

// logFile is a file of the server's log.
type logFile struct {
	name string
	size int64
}

// logReader lists the server's log files and reads them: on this host or through SQL.
type logReader interface {
	list(ctx context.Context) ([]logFile, error)
	read(ctx context.Context, name string, offset, n int64) ([]byte, error)
}

// logFormat is how the server's log is written, as its settings say.
type logFormat struct {
	json   bool // jsonlog; else stderr
	prefix *stderrPrefix
	zone   *time.Location
}

func (p *plansCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	format, err := readLogFormat(ctx, tx)
	if err != nil {
		return err
	}
	var r logReader
	switch p.cfg.Source {
	case PlansFile:
		r = fileLog{path: p.cfg.LogPath}
	case PlansSQL:
		r = sqlLog{tx}
	default:
		return fmt.Errorf("--plans.source %q: off, file or sql", p.cfg.Source)
	}
	files, err := r.list(ctx)
	if err != nil {
		return err
	}
	ext := ".log"
	if format.json {
		ext = ".json"
	}
	// A directory's files of the format (stderr,jsonlog writes both); a file given is read as it is.
	files = slices.DeleteFunc(files, func(f logFile) bool { return f.name != "" && !strings.HasSuffix(f.name, ext) })
	if p.skipping == nil {
		p.skipping = map[string]bool{}
	}
	present := map[string]bool{}
	for _, f := range files {
		present[f.name] = true
		off, known := p.offsets[f.name]
		switch {
		case !p.started:
			p.offsets[f.name] = f.size // from now on
			continue
		case !known || f.size < off: // a new file, or one truncated and written again
			off = 0
		}
		if err := p.readFile(ctx, r, f, off, format, c); err != nil {
			return err
		}
	}
	p.started = true
	for name := range p.offsets {
		if !present[name] {
			delete(p.offsets, name)
			delete(p.skipping, name)
		}
	}
	return nil
}

// readFile reads one file from off to its size, a chunk of at most ReadBytes at a time (the
// memory it holds), and keeps the plans of its complete lines.
func (p *plansCollector) readFile(ctx context.Context, r logReader, f logFile, off int64, format logFormat, c *Collection) error {
	for off < f.size {
		chunk, err := r.read(ctx, f.name, off, min(p.cfg.ReadBytes, f.size-off))
		if err != nil || len(chunk) == 0 {
			return err
		}
		p.bytes += float64(len(chunk))
		data := chunk
		if p.skipping[f.name] {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				off += int64(len(chunk))
				p.offsets[f.name] = off
				continue
			}
			data = data[i+1:]
			delete(p.skipping, f.name)
		}
		end := bytes.LastIndexByte(data, '\n') + 1
		if end == 0 {
			if int64(len(chunk)) < p.cfg.ReadBytes {
				return nil // a line still being written
			}
			p.skipping[f.name] = true // a line longer than a read: left out
			p.logger.Warn("a log line longer than a plan read (PlansConfig.ReadBytes) was skipped", "file", f.name, "read_bytes", p.cfg.ReadBytes)
			off += int64(len(chunk))
			p.offsets[f.name] = off
			continue
		}
		p.keepPlans(data[:end], format, c)
		off += int64(len(chunk) - len(data) + end)
		p.offsets[f.name] = off
	}
	return nil
}

// keepPlans adds the plans among complete log lines to the collection.
func (p *plansCollector) keepPlans(data []byte, format logFormat, c *Collection) {
	keep := func(ok bool, err error, e PlanExecution) {
		if err != nil {
			p.logger.Debug("a plan could not be read from the log", "err", err)
		}
		if ok {
			c.Plans = append(c.Plans, e)
			p.logged++
		}
	}
	if format.json {
		for line := range bytes.Lines(data) {
			var e PlanExecution
			ok, err := parseJSONLogLine(line, format.zone, &e)
			keep(ok, err, e)
		}
		return
	}
	// stderr: an entry is a line and the tab-indented lines after it.
	var entry []byte
	flush := func() {
		if len(entry) > 0 {
			var e PlanExecution
			ok, err := format.prefix.parse(entry, &e)
			keep(ok, err, e)
		}
		entry = entry[:0]
	}
	for line := range bytes.Lines(data) {
		if !bytes.HasPrefix(line, []byte("\t")) {
			flush()
		}
		entry = append(entry, line...)
	}
	flush()
}

func (p *plansCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	counter(ch, plansDesc, p.logged)
	counter(ch, planBytesDesc, p.bytes)
}

// readLogFormat reads how the server writes its log: jsonlog where log_destination has it,
// else stderr with a log_line_prefix that names each line's session.
func readLogFormat(ctx context.Context, tx pgx.Tx) (logFormat, error) {
	var dest, prefix, zone string
	if err := tx.QueryRow(ctx, `SELECT current_setting('log_destination'), current_setting('log_line_prefix'), current_setting('log_timezone')`).
		Scan(&dest, &prefix, &zone); err != nil {
		return logFormat{}, err
	}
	f := logFormat{zone: time.UTC}
	if loc, err := time.LoadLocation(zone); err == nil {
		f.zone = loc
	}
	if slices.Contains(strings.Split(strings.ReplaceAll(dest, " ", ""), ","), "jsonlog") {
		f.json = true
		return f, nil
	}
	if !slices.Contains(strings.Split(strings.ReplaceAll(dest, " ", ""), ","), "stderr") {
		return f, fmt.Errorf("log_destination = %q: plans are read from a jsonlog or stderr log", dest)
	}
	var err error
	f.prefix, err = newStderrPrefix(prefix, f.zone)
	return f, err
}

// fileLog reads the log on this host: a directory's files, or one file.
type fileLog struct{ path string }

func (l fileLog) list(context.Context) ([]logFile, error) {
	if l.path == "" {
		return nil, errors.New("--plans.source=file needs --plans.log-path: the server's log directory (or log file) on this host")
	}
	st, err := os.Stat(l.path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []logFile{{name: "", size: st.Size()}}, nil
	}
	entries, err := os.ReadDir(l.path)
	if err != nil {
		return nil, err
	}
	var out []logFile
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			out = append(out, logFile{name: e.Name(), size: info.Size()})
		}
	}
	return out, nil
}

func (l fileLog) read(_ context.Context, name string, offset, n int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(l.path, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, offset)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return buf[:got], err
}

// sqlLog reads the log through the connection: pg_ls_logdir (pg_monitor) and pg_read_file
// (a superuser's, pg_read_server_files', or granted), within the collection's statement and
// lock timeouts.
type sqlLog struct{ tx pgx.Tx }

func (l sqlLog) list(ctx context.Context) ([]logFile, error) {
	rows, err := l.tx.Query(ctx, `SELECT name, size FROM pg_catalog.pg_ls_logdir() ORDER BY modification, name`)
	if err != nil {
		return nil, fmt.Errorf("listing the log directory (pg_ls_logdir: pg_monitor): %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (logFile, error) {
		var f logFile
		return f, r.Scan(&f.name, &f.size)
	})
}

func (l sqlLog) read(ctx context.Context, name string, offset, n int64) ([]byte, error) {
	var b []byte
	err := l.tx.QueryRow(ctx, `SELECT pg_catalog.pg_read_binary_file(pg_catalog.current_setting('log_directory') || '/' || $1, $2, $3, true)`,
		name, offset, n).Scan(&b)
	if err != nil {
		return nil, fmt.Errorf("reading the server's log (pg_read_binary_file: grant EXECUTE on it, or pg_read_server_files): %w", err)
	}
	return b, nil
}
