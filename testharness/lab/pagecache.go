package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DropFromPageCache has the operating system forget the cached pages of relations (a table, an
// index): what memory pressure does to them, another job's files read in between (a backup, a
// copy of logs). A CHECKPOINT first writes their dirty buffers, and each file is flushed
// (fdatasync: the test servers run with fsync off) so that its pages are clean and can be
// dropped; the pages in shared_buffers stay. Their next reads go to the disk. The server's files
// must be this process's to read: a local server (root, or the user it runs as).
func (l *Lab) DropFromPageCache(relations ...string) {
	l.t.Helper()
	if l.srv.DataDir == "" {
		l.t.Skip("docker: the server's files are in its container")
	}
	l.Exec(`CHECKPOINT`)
	for _, rel := range relations {
		var path string
		if err := l.Admin.QueryRow(context.Background(), `SELECT pg_relation_filepath($1::regclass)`, rel).Scan(&path); err != nil {
			l.t.Fatal(err)
		}
		base := filepath.Join(l.srv.DataDir, path)
		for segment := 0; ; segment++ {
			file := base
			if segment > 0 {
				file = fmt.Sprintf("%s.%d", base, segment)
			}
			f, err := os.Open(file)
			if errors.Is(err, fs.ErrNotExist) && segment > 0 {
				break
			}
			if err != nil {
				l.t.Fatalf("%s: %v", rel, err)
			}
			err = unix.Fdatasync(int(f.Fd()))
			if err == nil {
				err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			}
			f.Close()
			if err != nil {
				l.t.Fatalf("%s: fdatasync, posix_fadvise(POSIX_FADV_DONTNEED): %v", file, err)
			}
		}
	}
}
