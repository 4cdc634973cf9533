package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nobodyID is the uid and gid that run the server when we run as
// root (initdb and postgres refuse to run as root).
const nobodyID = 65534

// localServer is a server run from binaries on this machine with pg_ctl.
type localServer struct {
	binDir   string
	root     string // private temp dir: data/, sock/
	dataDir  string
	sockDir  string
	logFile  string
	port     int
	settings [][2]string
	cred     *syscall.Credential // nil: run as ourselves
	env      []string

	pidNote  string         // well-known file naming the postmaster, for `make clean-pg`
	watchdog io.WriteCloser // closing it (or our death) makes the watchdog kill the server
}

// PidNoteDir returns the directory where each running server of this
// package leaves a file "<name>.pid" holding the postmaster's pid, the
// server's temp dir and the pid of the process that owns it, one a
// line (used by `make clean-pg`).
func PidNoteDir() string { return filepath.Join(tempBase(), "pgbatch-pgtest") }

// tempBase is os.TempDir(), or /tmp when we are root and nobody could not
// reach os.TempDir().
func tempBase() string {
	d := os.TempDir()
	if os.Geteuid() == 0 && reachableByNobody(d) != nil {
		return "/tmp"
	}
	return d
}

func startLocal(ctx context.Context, major int, opts Options) (*Server, error) {
	var binDir, desc string
	if opts.Debian {
		binDir = fmt.Sprintf("/usr/lib/postgresql/%d/bin", major)
		if _, err := os.Stat(filepath.Join(binDir, "postgres")); err != nil {
			return nil, fmt.Errorf("Debian's PostgreSQL %d is not installed (%v): run `make deps` (apt-get install postgresql-%d postgresql-%d-cron)", major, err, major, major)
		}
		desc = fmt.Sprintf("PostgreSQL %d (Debian %s)", major, binDir)
	} else {
		t0 := time.Now()
		var err error
		if binDir, err = BinDir(major); err != nil {
			return nil, err
		}
		if d := time.Since(t0); d > 200*time.Millisecond {
			opts.Logf("pgserver: fetched PostgreSQL %d binaries (%s@%s) in %v", major, npmPackage, NPMVersions[major], d.Round(time.Millisecond))
		}
		desc = fmt.Sprintf("PostgreSQL %d (npm %s)", major, NPMVersions[major])
	}
	l, err := newLocal(major, binDir, settings(opts), true)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			l.destroy()
		}
	}()
	if out, err := l.run(ctx, "initdb", "-D", l.dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, fmt.Errorf("%s: initdb: %v\n%s", desc, err, out)
	}
	conf := filepath.Join(l.dataDir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString("\n# pg-batch-exporter tests\ninclude 'pgtest.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := l.startOnFreePort(ctx, desc); err != nil {
		return nil, err
	}
	ok = true
	return l.server(major, desc), nil
}

// newLocal makes a server's private temp dir (root: data/ where withData, sock/), owned by
// nobody where we are root.
func newLocal(major int, binDir string, settings [][2]string, withData bool) (*localServer, error) {
	root, err := os.MkdirTemp(tempBase(), fmt.Sprintf("pgtest-%d-", major))
	if err != nil {
		return nil, err
	}
	l := &localServer{
		binDir:   binDir,
		root:     root,
		dataDir:  filepath.Join(root, "data"),
		sockDir:  filepath.Join(root, "sock"),
		settings: settings,
	}
	l.logFile = filepath.Join(l.dataDir, "server.log")
	l.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + root, "LANG=C", "LC_ALL=C"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		l.env = append(l.env, "TZ="+tz)
	}
	// "owner" names this process: `make clean-pg` leaves the servers of
	// live processes alone.
	if err := os.WriteFile(filepath.Join(root, "owner"), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		l.destroy()
		return nil, err
	}
	dirs := []string{l.sockDir}
	if withData {
		dirs = append(dirs, l.dataDir)
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err != nil {
			l.destroy()
			return nil, err
		}
	}
	if os.Geteuid() == 0 {
		l.cred = &syscall.Credential{Uid: nobodyID, Gid: nobodyID, Groups: []uint32{}}
		for _, d := range append(dirs, root) {
			if err := os.Chown(d, nobodyID, nobodyID); err != nil {
				l.destroy()
				return nil, err
			}
		}
	}
	return l, nil
}

// startOnFreePort starts the initialised server on a free port, and its watchdog.
func (l *localServer) startOnFreePort(ctx context.Context, desc string) error {
	// A free port can be taken by someone else before the server binds
	// it: retry with another one.
	for attempt := 1; ; attempt++ {
		var err error
		if l.port, err = freePort(); err != nil {
			return err
		}
		if err := l.writeConf(); err != nil {
			return err
		}
		err = l.start(ctx)
		if err == nil {
			break
		}
		tail := l.log(tailSize)
		if attempt >= 5 || !portTaken(tail) {
			return fmt.Errorf("%s: %v\nserver log %s:\n%s", desc, err, l.logFile, tail)
		}
	}
	return l.startWatchdog()
}

func (l *localServer) server(major int, desc string) *Server {
	return &Server{Major: major, Host: "127.0.0.1", Port: l.port, User: "postgres", DataDir: l.dataDir, BinDir: l.binDir, Desc: desc, be: l}
}

// StartStandby starts a streaming standby of s (a server run from local binaries), which
// it stops cleanly and starts again: a copy of a cleanly stopped primary's data directory
// is a base backup. The standby connects as application_name name (synchronous_standby_names
// may name it), hot_standby on; pg_wal_replay_pause() on it holds its replay.
func (s *Server) StartStandby(ctx context.Context, name string) (*Server, error) {
	primary, ok := s.be.(*localServer)
	if !ok {
		return nil, fmt.Errorf("a standby of %s: only of a server run from local binaries", s.Desc)
	}
	if err := s.Stop(ctx); err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started && !s.Running() {
			_ = s.Restart(context.WithoutCancel(ctx)) // the primary as it was; the error says what failed
		}
	}()
	// A conninfo value in single quotes, \ and ' escaped.
	quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "'"
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=%s", primary.port, quoted)
	l, err := newLocal(s.Major, primary.binDir, append(slices.Clone(primary.settings), [2]string{"primary_conninfo", conninfo}), false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !started {
			l.destroy()
		}
	}()
	// cp -a keeps the files' owner (nobody) and modes (0700: the server refuses others).
	if out, err := exec.CommandContext(ctx, "cp", "-a", primary.dataDir, l.dataDir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copying %s: %v %s", primary.dataDir, err, out)
	}
	if err := os.Truncate(l.logFile, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	signal := filepath.Join(l.dataDir, "standby.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		return nil, err
	}
	if l.cred != nil {
		if err := os.Chown(signal, nobodyID, nobodyID); err != nil {
			return nil, err
		}
	}
	if err := s.Restart(ctx); err != nil {
		return nil, err
	}
	desc := s.Desc + ", standby " + name
	if err := l.startOnFreePort(ctx, desc); err != nil {
		return nil, err
	}
	started = true
	standby := l.server(s.Major, desc)
	standby.running = true
	return standby, nil
}

func portTaken(log string) bool {
	return strings.Contains(log, "Address already in use") ||
		strings.Contains(log, "could not bind") ||
		strings.Contains(log, "could not create any TCP/IP sockets")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func quoteConf(v string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", "''") + "'"
}

// writeConf writes pgtest.conf, included at the end of postgresql.conf.
func (l *localServer) writeConf() error {
	var b strings.Builder
	kv := append([][2]string{
		{"listen_addresses", "127.0.0.1"},
		{"port", strconv.Itoa(l.port)},
		{"unix_socket_directories", l.sockDir},
	}, l.settings...)
	for _, s := range kv {
		fmt.Fprintf(&b, "%s = %s\n", s[0], quoteConf(s[1]))
	}
	p := filepath.Join(l.dataDir, "pgtest.conf")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return err
	}
	if l.cred != nil {
		return os.Chown(p, nobodyID, nobodyID)
	}
	return nil
}

// run runs a program of binDir as the server's user.
func (l *localServer) run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(l.binDir, name), args...)
	cmd.Dir = l.root
	cmd.Env = l.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: l.cred}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return buf.String(), err
}

func (l *localServer) start(ctx context.Context) error {
	out, err := l.run(ctx, "pg_ctl", "start", "-D", l.dataDir, "-l", l.logFile, "-w", "-t", "120", "-s")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v %s", err, strings.TrimSpace(out))
	}
	l.notePid() // best effort: only `make clean-pg` needs it
	return nil
}

func (l *localServer) stop(ctx context.Context, immediate bool) error {
	mode := "fast"
	if immediate {
		mode = "immediate"
	}
	out, err := l.run(ctx, "pg_ctl", "stop", "-D", l.dataDir, "-m", mode, "-w", "-t", "60", "-s")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v %s", err, strings.TrimSpace(out))
	}
	return nil
}

// postmasterPid reads the first line of postmaster.pid (0 if none).
func (l *localServer) postmasterPid() int {
	b, err := os.ReadFile(filepath.Join(l.dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// notePid writes the well-known file naming the running postmaster. The
// directory is shared by all users, like /tmp (mode 1777).
func (l *localServer) notePid() error {
	dir := PidNoteDir()
	if err := os.Mkdir(dir, 0o755); err == nil || errors.Is(err, fs.ErrExist) {
		os.Chmod(dir, 0o777|os.ModeSticky) // fails harmlessly if not ours
	} else {
		return err
	}
	l.pidNote = filepath.Join(dir, filepath.Base(l.root)+".pid")
	return os.WriteFile(l.pidNote, []byte(fmt.Sprintf("%d\n%s\n%d\n", l.postmasterPid(), l.root, os.Getpid())), 0o644)
}

// startWatchdog starts a shell that waits for EOF on its stdin, which comes
// when we close the pipe or when this process dies however it dies; it then
// sends SIGQUIT (immediate shutdown) to the postmaster and removes the
// server's files. It runs in its own process group so that a ^C meant for
// the tests does not kill it first.
func (l *localServer) startWatchdog() error {
	script := `read _ ; p=$(head -n 1 "$1" 2>/dev/null); ` +
		`if [ -n "$p" ]; then kill -QUIT "$p" 2>/dev/null && sleep 2; fi; rm -rf "$2" "$3"`
	cmd := exec.Command("/bin/sh", "-c", script, "pgtest-watchdog",
		filepath.Join(l.dataDir, "postmaster.pid"), l.root, l.pidNote)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting watchdog: %w", err)
	}
	go cmd.Wait()
	l.watchdog = w
	return nil
}

func (l *localServer) destroy() {
	if pid := l.postmasterPid(); pid > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := l.run(ctx, "pg_ctl", "stop", "-D", l.dataDir, "-m", "immediate", "-w", "-t", "30", "-s")
		cancel()
		if err != nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	os.RemoveAll(l.root)
	if l.pidNote != "" {
		os.Remove(l.pidNote)
	}
	if l.watchdog != nil {
		l.watchdog.Close()
	}
}

func (l *localServer) log(limit int) string {
	f, err := os.Open(l.logFile)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && limit > 0 && fi.Size() > int64(limit) {
		f.Seek(fi.Size()-int64(limit), io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
