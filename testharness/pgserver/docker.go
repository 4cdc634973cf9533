package pgserver

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

var (
	dockerOnce sync.Once
	dockerOK   bool
)

// UseDocker tells whether to run servers in Docker: PGBATCH_TEST_BACKEND
// "local" or "docker" decides; otherwise docker when an engine answers a
// ping within a few seconds.
func UseDocker() bool {
	dockerOnce.Do(func() {
		switch strings.ToLower(os.Getenv("PGBATCH_TEST_BACKEND")) {
		case "local":
			dockerOK = false
		case "docker":
			dockerOK = true
		default:
			dockerOK = DockerAnswers()
		}
	})
	return dockerOK
}

// DockerAnswers tells whether a Docker engine answers a ping within a few
// seconds.
func DockerAnswers() bool {
	// Cheap look first: with no DOCKER_HOST, no known socket and no
	// testcontainers config, there is no engine to ask.
	home, _ := os.UserHomeDir()
	candidates := []string{"/var/run/docker.sock", "/run/docker.sock",
		filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "docker.sock"),
		filepath.Join(home, ".docker", "run", "docker.sock"),
		filepath.Join(home, ".testcontainers.properties")}
	found := os.Getenv("DOCKER_HOST") != ""
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			found = true
		}
	}
	if !found {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return false
	}
	defer cli.Close()
	_, err = cli.Ping(ctx, client.PingOptions{})
	return err == nil
}

// dockerServer is a server in a container of image postgres:<major>, bound
// to a fixed port of 127.0.0.1 so that a restart keeps the port.
type dockerServer struct {
	ctr  *tcpostgres.PostgresContainer
	port int
}

func startDocker(ctx context.Context, major int, opts Options) (*Server, error) {
	desc := fmt.Sprintf("PostgreSQL %d (docker postgres:%d)", major, major)
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := []string{"postgres", "-c", "listen_addresses=*"}
	for _, kv := range settings(opts) {
		cmd = append(cmd, "-c", kv[0]+"="+kv[1])
	}
	ctr, err := tcpostgres.Run(ctx, fmt.Sprintf("postgres:%d", major),
		testcontainers.WithEnv(map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust"}),
		testcontainers.WithCmd(cmd...),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = network.PortMap{
				network.MustParsePort("5432/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}},
			}
		}),
		tcpostgres.BasicWaitStrategies(),
	)
	d := &dockerServer{ctr: ctr, port: port}
	if err != nil {
		if ctr != nil {
			d.destroy()
		}
		return nil, fmt.Errorf("%s: %w", desc, err)
	}
	s := &Server{Major: major, Host: "127.0.0.1", Port: port, User: "postgres", Desc: desc, be: d}
	if err := d.waitReady(ctx); err != nil {
		d.destroy()
		return nil, fmt.Errorf("%s: %w", desc, err)
	}
	return s, nil
}

func (d *dockerServer) waitReady(ctx context.Context) error {
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", d.port)
	for {
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			return c.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for connections: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *dockerServer) start(ctx context.Context) error {
	if err := d.ctr.Start(ctx); err != nil {
		return err
	}
	return d.waitReady(ctx)
}

func (d *dockerServer) stop(ctx context.Context, immediate bool) error {
	timeout := time.Minute
	if immediate {
		timeout = 0 // SIGKILL at once
	}
	return d.ctr.Stop(ctx, &timeout) // the postgres image stops with SIGINT: a fast shutdown
}

func (d *dockerServer) destroy() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = d.ctr.Terminate(ctx)
}

func (d *dockerServer) log(limit int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := d.ctr.Logs(ctx)
	if err != nil {
		return fmt.Sprintf("(no container log: %v)", err)
	}
	defer rc.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		b.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	s := b.String()
	if limit > 0 && len(s) > limit {
		s = s[len(s)-limit:]
	}
	return s
}
