package main

// Test data (random blobs that hash to their digests, generated once and reused) and the
// fake upstream: nginx playing registry.ollama.ai (manifests, 307 blob redirects to
// another host name) and its CDN (ranged static files, limit_rate per connection), plus
// an uncapped static server for the warm-serving baseline.

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type blobInfo struct {
	Hex  string `json:"hex"`
	Size int64  `json:"size"`
}

func (b blobInfo) digest() string { return "sha256:" + b.Hex }

type dataSet struct {
	Layer    blobInfo `json:"layer"`    // the model layer of the cold pull
	Config   blobInfo `json:"config"`   // the model config blob
	TTFB     blobInfo `json:"ttfb"`     // the blob for first-byte timing
	Warm     blobInfo `json:"warm"`     // the blob for warm serving
	Manifest string   `json:"manifest"` // sha256 of the manifest file
	dir      string
}

func (d *dataSet) blobPath(b blobInfo) string { return filepath.Join(d.dir, "blobs", b.Hex) }

// xorshift64*: fast, incompressible enough for a cache benchmark.
type prng struct{ s uint64 }

func (p *prng) fill(b []byte) {
	var tmp [8]byte
	for i := 0; i < len(b); i += 8 {
		p.s ^= p.s << 13
		p.s ^= p.s >> 7
		p.s ^= p.s << 17
		v := p.s * 0x2545F4914F6CDD1D
		if i+8 <= len(b) {
			binary.LittleEndian.PutUint64(b[i:], v)
		} else {
			binary.LittleEndian.PutUint64(tmp[:], v)
			copy(b[i:], tmp[:])
		}
	}
}

func writeRandomBlob(dir string, size int64, seed uint64) (blobInfo, error) {
	tmp, err := os.CreateTemp(dir, "gen-*")
	if err != nil {
		return blobInfo{}, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(tmp, h), 4<<20)
	r := prng{s: seed | 1}
	buf := make([]byte, 4<<20)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		r.fill(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			tmp.Close()
			return blobInfo{}, err
		}
		left -= n
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return blobInfo{}, err
	}
	if err := tmp.Close(); err != nil {
		return blobInfo{}, err
	}
	b := blobInfo{Hex: hex.EncodeToString(h.Sum(nil)), Size: size}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return blobInfo{}, err
	}
	return b, os.Rename(tmp.Name(), filepath.Join(dir, b.Hex))
}

func writeSmallBlob(dir string, data []byte) (blobInfo, error) {
	sum := sha256.Sum256(data)
	b := blobInfo{Hex: hex.EncodeToString(sum[:]), Size: int64(len(data))}
	return b, os.WriteFile(filepath.Join(dir, b.Hex), data, 0o644)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.Size()
}

// prepareData reuses <dir>/meta.json when its blobs exist with the wanted sizes;
// otherwise it generates everything again.
func prepareData(dir string, layerSize, ttfbSize, warmSize int64) (*dataSet, error) {
	blobs := filepath.Join(dir, "blobs")
	metaPath := filepath.Join(dir, "meta.json")
	var d dataSet
	if b, err := os.ReadFile(metaPath); err == nil && json.Unmarshal(b, &d) == nil {
		d.dir = dir
		ok := d.Layer.Size == layerSize && d.TTFB.Size == ttfbSize && d.Warm.Size == warmSize
		for _, bi := range []blobInfo{d.Layer, d.Config, d.TTFB, d.Warm} {
			ok = ok && bi.Hex != "" && fileSize(d.blobPath(bi)) == bi.Size
		}
		ok = ok && fileSize(filepath.Join(dir, "manifests", "library", "bench", "1")) > 0
		if ok {
			logf("test data: reusing %s", dir)
			return &d, nil
		}
	}
	logf("test data: generating %s of random blobs in %s (once; reused by later runs)",
		human(layerSize+ttfbSize+warmSize), dir)
	os.RemoveAll(blobs)
	os.RemoveAll(filepath.Join(dir, "manifests"))
	os.Remove(metaPath)
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	seed := uint64(time.Now().UnixNano())
	d = dataSet{dir: dir}
	var err error
	t0 := time.Now()
	if d.Layer, err = writeRandomBlob(blobs, layerSize, seed); err != nil {
		return nil, err
	}
	if d.TTFB, err = writeRandomBlob(blobs, ttfbSize, seed*3+7); err != nil {
		return nil, err
	}
	if d.Warm, err = writeRandomBlob(blobs, warmSize, seed*5+11); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`{"model_format":"gguf","model_family":"bench","model_families":["bench"],"model_type":"%dB","file_type":"Q4_0","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}`,
		layerSize, d.Layer.digest())
	if d.Config, err = writeSmallBlob(blobs, []byte(cfg)); err != nil {
		return nil, err
	}
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"%s","size":%d}]}`,
		d.Config.digest(), d.Config.Size, d.Layer.digest(), d.Layer.Size)
	mdir := filepath.Join(dir, "manifests", "library", "bench")
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(mdir, "1"), []byte(manifest), 0o644); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(manifest))
	d.Manifest = hex.EncodeToString(sum[:])
	b, _ := json.MarshalIndent(&d, "", "  ")
	if err := os.WriteFile(metaPath, b, 0o644); err != nil {
		return nil, err
	}
	logf("test data: generated in %.1f s", time.Since(t0).Seconds())
	return &d, nil
}

// ---------------------------------------------------------------------------------------
// nginx

type upstream struct {
	regPort, cdnPort, diskPort int
	rate                       string
	proc                       *proc
	dir                        string
}

const cdnHost = "127.0.0.2"

func (u *upstream) registryURL() string { return fmt.Sprintf("http://127.0.0.1:%d", u.regPort) }
func (u *upstream) cdnURL(b blobInfo) string {
	return fmt.Sprintf("http://%s:%d/blobs/%s", cdnHost, u.cdnPort, b.Hex)
}
func (u *upstream) diskURL(b blobInfo) string {
	return fmt.Sprintf("http://127.0.0.1:%d/blobs/%s", u.diskPort, b.Hex)
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func nginxConf(dir, data string, reg, cdn, disk int, rate string) string {
	q := strconv.Quote
	blobs := filepath.Join(data, "blobs") + "/"
	manifests := filepath.Join(data, "manifests")
	return fmt.Sprintf(`# generated by bench/harness: registry.ollama.ai + its CDN, and a plain static server
worker_processes auto;
pid %[1]s;
error_log %[2]s warn;
events { worker_connections 1024; }
http {
    # as Debian's default nginx.conf
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    default_type application/octet-stream;
    log_format bench '$msec $server_addr:$server_port $status $request_time $bytes_sent $connection "$request" "$http_range" "$http_user_agent"';
    access_log %[3]s bench;
    client_body_temp_path %[4]s;
    proxy_temp_path %[5]s;
    fastcgi_temp_path %[6]s;
    uwsgi_temp_path %[7]s;
    scgi_temp_path %[8]s;

    # "registry": manifests as text/plain, blobs answered 307 to the CDN host name
    server {
        listen 127.0.0.1:%[9]d;
        location ~ ^/v2/([^/]+)/([^/]+)/manifests/([^/]+)$ {
            default_type text/plain;
            alias %[10]s;
        }
        location ~ "^/v2/([^/]+)/([^/]+)/blobs/sha256:([0-9a-f]{64})$" {
            return 307 http://%[11]s:%[12]d/blobs/$3;
        }
        location / { return 404; }
    }

    # "CDN": ranged static files, each connection capped like a CDN does
    server {
        listen %[11]s:%[12]d;
        location /blobs/ {
            alias %[13]s;
            limit_rate %[14]s;
        }
        location / { return 404; }
    }

    # baseline for warm serving: the same files from disk, uncapped; and nginx's open
    # connections, so that the harness can tell when every request is in the access log
    server {
        listen 127.0.0.1:%[15]d;
        location /blobs/ { alias %[13]s; }
        location = /_nginx_status { stub_status; access_log off; }
        location / { return 404; }
    }
}
`, q(filepath.Join(dir, "nginx.pid")), q(filepath.Join(dir, "error.log")),
		q(filepath.Join(dir, "access.log")),
		q(filepath.Join(dir, "tmp", "body")), q(filepath.Join(dir, "tmp", "proxy")),
		q(filepath.Join(dir, "tmp", "fastcgi")), q(filepath.Join(dir, "tmp", "uwsgi")),
		q(filepath.Join(dir, "tmp", "scgi")),
		reg, q(manifests+"/$1/$2/$3"), cdnHost, cdn, q(blobs), rate, disk)
}

func waitPort(addr string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: nothing listening on %s after %s", p.name, addr, timeout)
}

func startUpstream(nginx, work string, d *dataSet, rate string) (*upstream, error) {
	dir := filepath.Join(work, "nginx")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		u := &upstream{rate: rate, dir: dir}
		var err error
		if u.regPort, err = freePort("127.0.0.1"); err != nil {
			return nil, err
		}
		if u.cdnPort, err = freePort(cdnHost); err != nil {
			return nil, fmt.Errorf("cannot bind %s (loopback alias): %w", cdnHost, err)
		}
		if u.diskPort, err = freePort("127.0.0.1"); err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConf(dir, d.dir, u.regPort, u.cdnPort, u.diskPort, rate)), 0o644); err != nil {
			return nil, err
		}
		u.proc, err = start("nginx", filepath.Join(dir, "stderr.log"), nil, nginx,
			"-p", dir+"/", "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
		if err != nil {
			return nil, err
		}
		err = nil
		for _, a := range []string{
			fmt.Sprintf("127.0.0.1:%d", u.regPort),
			fmt.Sprintf("%s:%d", cdnHost, u.cdnPort),
			fmt.Sprintf("127.0.0.1:%d", u.diskPort),
		} {
			if err = waitPort(a, u.proc, 10*time.Second); err != nil {
				break
			}
		}
		if err == nil {
			if err = u.check(d); err == nil {
				return u, nil
			}
		}
		u.proc.stop(3 * time.Second)
		lastErr = fmt.Errorf("nginx: %v\n%s\n%s", err, logTail(filepath.Join(dir, "error.log"), 10),
			logTail(filepath.Join(dir, "stderr.log"), 10))
		if u.proc.exited() && !strings.Contains(lastErr.Error(), "Address already in use") {
			break
		}
	}
	return nil, lastErr
}

// check asks the fake registry what gopull will ask: manifest, HEAD blob (307 → CDN).
func (u *upstream) check(d *dataSet) error {
	// No keep-alive: an idle connection would count as open in nginx's status (quiet).
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(u.registryURL() + "/v2/library/bench/manifests/1")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(body)
	if resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != d.Manifest {
		return fmt.Errorf("manifest: status %d, %d bytes, not the generated manifest", resp.StatusCode, len(body))
	}
	for _, b := range []blobInfo{d.Layer, d.Config, d.TTFB, d.Warm} {
		resp, err := c.Head(u.registryURL() + "/v2/library/bench/blobs/" + b.digest())
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != b.Size || resp.Request.URL.Host != fmt.Sprintf("%s:%d", cdnHost, u.cdnPort) {
			return fmt.Errorf("HEAD blob %s: status %d, length %d, final host %s (want 200, %d, the CDN); can nginx's worker user read %s?",
				b.Hex[:12], resp.StatusCode, resp.ContentLength, resp.Request.URL.Host, b.Size, d.dir)
		}
	}
	resp, err = c.Head(u.diskURL(d.Warm))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != d.Warm.Size {
		return fmt.Errorf("disk server: HEAD status %d length %d", resp.StatusCode, resp.ContentLength)
	}
	return nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
