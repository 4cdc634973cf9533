package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// writeTLSWebConfig writes a self-signed certificate for 127.0.0.1 and a web config with TLS
// and one basic-auth user.
func writeTLSWebConfig(t *testing.T, user, password string) string {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		"web.yml":  fmt.Appendf(nil, "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  %s: %s\n", user, hash),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "web.yml")
}

// TestBinaryTLSBasicAuthAndConcurrentRequests: behind TLS and basic auth every path refuses
// no and wrong credentials and serves the right ones; plain HTTP to the TLS listener gets no
// page; 200 concurrent mixed requests are all answered and the goroutines come back; the
// database password is on no page and in no log line.
func TestBinaryTLSBasicAuthAndConcurrentRequests(t *testing.T) {
	bin := buildBinary(t)
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			const secret = "db-pw-never-shown"
			dsn := strings.Replace(pgtest.Start(t, major).NewDatabase(t), "postgres@", "postgres:"+secret+"@", 1)
			p := startExporterProcess(t, bin, []string{"DATA_SOURCE_NAME=" + dsn}, "--web.config.file="+writeTLSWebConfig(t, "prometheus", "scrape-pw"),
				"--recorder.enabled", "--tier.sample-interval=200ms", "--tier.snapshot-interval=300ms")
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200,
				TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the test's own self-signed certificate
			get := func(path, user, password string) (int, string) {
				req, _ := http.NewRequest("GET", "https://"+p.addr+path, nil)
				if user != "" {
					req.SetBasicAuth(user, password)
				}
				resp, err := client.Do(req)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(body)
			}
			metric := func(series string) string {
				_, body := get("/metrics", "prometheus", "scrape-pw")
				for _, line := range strings.Split(body, "\n") {
					if v, ok := strings.CutPrefix(line, series+" "); ok {
						return v
					}
				}
				return ""
			}
			p.waitFor("a snapshot recorded", 30*time.Second, func() bool {
				return metric(`pgbatch_recorder_rows_written_total{table="snapshots"}`) >= "1" && metric("pgbatch_up") == "1"
			})
			paths := []string{"/", "/metrics", "/metrics?tier=sample", "/metrics?tier=snapshot", "/report", "/report/run/1"}
			for _, path := range paths {
				for _, c := range []struct{ user, password string }{{"", ""}, {"prometheus", "wrong"}, {"nobody", "scrape-pw"}} {
					if code, body := get(path, c.user, c.password); code != http.StatusUnauthorized || strings.Contains(body, "pgbatch_") {
						t.Errorf("%s as %q/%q: %d, want 401", path, c.user, c.password, code)
					}
				}
				code, body := get(path, "prometheus", "scrape-pw")
				if want := map[bool]int{true: 404, false: 200}[path == "/report/run/1"]; code != want {
					t.Errorf("%s with the right credentials: %d, want %d: %.200s", path, code, want, body)
				}
				if strings.Contains(body, secret) {
					t.Errorf("%s shows the database password", path)
				}
			}
			if resp, err := http.Get("http://" + p.addr + "/metrics"); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "pgbatch_") {
					t.Errorf("plain HTTP to the TLS listener: %d %.200s", resp.StatusCode, body)
				}
			}

			baseline := metric("go_goroutines")
			var wg sync.WaitGroup
			failures := make(chan string, 200)
			for i := range 200 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					path := paths[i%len(paths)]
					if code, _ := get(path, "prometheus", "scrape-pw"); code != 200 && !(code == 404 && path == "/report/run/1") {
						failures <- fmt.Sprintf("%s: %d", path, code)
					}
				}()
			}
			wg.Wait()
			close(failures)
			for f := range failures {
				t.Errorf("concurrent request %s", f)
			}
			client.CloseIdleConnections()
			var now string
			p.waitFor("goroutines back to their count", 20*time.Second, func() bool {
				now = metric("go_goroutines")
				var b, n int
				fmt.Sscan(baseline, &b)
				fmt.Sscan(now, &n)
				return n > 0 && n <= b+5
			})
			t.Logf("goroutines: %s before 200 concurrent requests, %s after", baseline, now)
			p.sigterm(20 * time.Second)
			if strings.Contains(p.logs.String(), secret) {
				t.Errorf("the database password is in the logs:\n%s", p.logs.String())
			}
		})
	}
}
