package exposition

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	pgcollectors "github.com/pg-batch-exporter/pg-batch-exporter/collectors"
)

// acceptedFormats are the expositions served, in the exporter's order of preference when a
// client accepts several: the OpenMetrics text Prometheus 3 asks for first, the protobuf
// format Prometheus asks for first with native histograms on, and the classic text format.
var acceptedFormats = []expfmt.Format{expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1, expfmt.FmtProtoDelim, expfmt.FmtText}

// view serves one /metrics view. Profiling a scrape of 13.5k series showed the time going to
// building const metrics, the registry's consistency checks and sorting, text encoding and
// gzip, all for data that changes once per collection. So the tier data is encoded once per
// collection and per format a client asks for, and kept (plain, and deflated for gzip); a
// scrape encodes only the small live part (self-metrics, wait counters, runtime) and appends it.
type view struct {
	runner   *pgcollectors.Runner
	tiers    []pgcollectors.Tier
	tierData prometheus.Gatherer
	live     prometheus.Gatherer
	logger   *slog.Logger

	mu      sync.Mutex
	from    []*pgcollectors.Collection // the collections the cache was encoded from
	encoded map[expfmt.Format]*encoding
}

// encoding is the tier data in one format.
type encoding struct {
	plain []byte
	// deflated is plain compressed and sync-flushed, so a gzip body can continue it with the
	// live part compressed on its own; crc is plain's CRC-32, which the live part extends.
	deflated []byte
	crc      uint32
	err      error
}

func newView(r *pgcollectors.Runner, tiers []pgcollectors.Tier, logger *slog.Logger, live ...prometheus.Collector) *view {
	tierReg := prometheus.NewRegistry()
	tierReg.MustRegister(r.TierMetrics(tiers...))
	liveReg := prometheus.NewRegistry()
	liveReg.MustRegister(r.LiveMetrics(tiers...))
	liveReg.MustRegister(live...)
	return &view{runner: r, tiers: tiers, tierData: tierReg, live: liveReg, logger: logger,
		encoded: map[expfmt.Format]*encoding{}}
}

// refresh re-encodes, after a collection, the formats clients asked for before, so that no
// scrape pays for it.
func (v *view) refresh() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if latest := v.latest(); !slices.Equal(latest, v.from) {
		formats := make([]expfmt.Format, 0, len(v.encoded))
		for f := range v.encoded {
			formats = append(formats, f)
		}
		v.from, v.encoded = latest, map[expfmt.Format]*encoding{}
		for _, f := range formats {
			v.encoded[f] = v.encode(f)
		}
	}
}

func (v *view) latest() []*pgcollectors.Collection {
	out := make([]*pgcollectors.Collection, len(v.tiers))
	for i, t := range v.tiers {
		out[i] = v.runner.Latest(t)
	}
	return out
}

// encodingFor returns the tier data in a format, encoding it if this collection has not been
// encoded in it yet.
func (v *view) encodingFor(f expfmt.Format) *encoding {
	v.mu.Lock()
	defer v.mu.Unlock()
	if latest := v.latest(); !slices.Equal(latest, v.from) {
		v.from, v.encoded = latest, map[expfmt.Format]*encoding{}
	}
	e := v.encoded[f]
	if e == nil {
		e = v.encode(f)
		v.encoded[f] = e
	}
	return e
}

func (v *view) encode(f expfmt.Format) *encoding {
	var plain bytes.Buffer
	if err := encodeFamilies(&plain, v.tierData, f, false); err != nil {
		return &encoding{err: err}
	}
	var deflated bytes.Buffer
	zw, _ := flate.NewWriter(&deflated, flate.DefaultCompression)
	_, _ = zw.Write(plain.Bytes())
	_ = zw.Flush() // byte-aligned and not final: the live part's deflate stream follows
	return &encoding{plain: plain.Bytes(), deflated: deflated.Bytes(), crc: crc32.ChecksumIEEE(plain.Bytes())}
}

// encodeFamilies gathers g and writes it in format f; closing adds the end of an OpenMetrics
// exposition (# EOF), which only the last part may carry.
func encodeFamilies(buf *bytes.Buffer, g prometheus.Gatherer, f expfmt.Format, closing bool) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(buf, f)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	if closing {
		return enc.(expfmt.Closer).Close()
	}
	return nil
}

var (
	livePool    = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	deflatePool = sync.Pool{New: func() any { w, _ := flate.NewWriter(nil, flate.BestSpeed); return w }}
)

func (v *view) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	f := expfmt.NegotiateAccept(req.Header, acceptedFormats...)
	e := v.encodingFor(f)
	live := livePool.Get().(*bytes.Buffer)
	live.Reset()
	defer livePool.Put(live)
	err := e.err
	if err == nil {
		err = encodeFamilies(live, v.live, f, true)
	}
	if err != nil {
		v.logger.Error("encoding metrics", "err", err)
		http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", string(f))
	h.Add("Vary", "Accept, Accept-Encoding")
	if !acceptsGzip(req.Header.Get("Accept-Encoding")) {
		h.Set("Content-Length", strconv.Itoa(len(e.plain)+live.Len()))
		_, _ = w.Write(e.plain)
		_, _ = w.Write(live.Bytes())
		return
	}
	// One gzip member (RFC 1952): header, the cached deflate blocks, the live part's blocks,
	// then the CRC-32 and length of the whole.
	body := livePool.Get().(*bytes.Buffer)
	body.Reset()
	defer livePool.Put(body)
	zw := deflatePool.Get().(*flate.Writer)
	zw.Reset(body)
	_, _ = zw.Write(live.Bytes())
	_ = zw.Close()
	deflatePool.Put(zw)
	header := [10]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], crc32.Update(e.crc, crc32.IEEETable, live.Bytes()))
	binary.LittleEndian.PutUint32(trailer[4:], uint32(len(e.plain)+live.Len()))
	h.Set("Content-Encoding", "gzip")
	h.Set("Content-Length", strconv.Itoa(len(header)+len(e.deflated)+body.Len()+len(trailer)))
	_, _ = w.Write(header[:])
	_, _ = w.Write(e.deflated)
	_, _ = w.Write(body.Bytes())
	_, _ = w.Write(trailer[:])
}

// acceptsGzip reads an Accept-Encoding header: gzip (or *) listed without q=0.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(part, ";")
		name = strings.TrimSpace(name)
		if name != "gzip" && name != "*" {
			continue
		}
		if q, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				continue
			}
		}
		return true
	}
	return false
}
