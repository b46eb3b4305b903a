// The Go peer of the engine's `config` path, kept as small as the Rust side's work on a read:
// `<mount>/config` takes a few typed fields on write (validated, 400 naming the field on bad
// input) and answers them from memory on read. The Rust engine also answers reads from an
// in-memory copy; unlike it, this peer never writes to storage and verifies nothing at Qlik.
package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"qlikbench/pb"
	"qlikbench/peer"
)

type config struct {
	TenantURL      string
	CACert         string
	AutoRotate     bool
	RequestTimeout time.Duration
	MaxRetries     int64
}

type mount struct {
	mu  sync.RWMutex
	cfg *config
}

func bad(format string, args ...interface{}) *pb.ProtoError {
	return &pb.ProtoError{ErrType: peer.ErrBadRequest, ErrMsg: fmt.Sprintf(format, args...)}
}

// Field decoders in the manner of the SDK's framework.FieldData: strings, JSON numbers or
// numeric strings, booleans or "true"/"false", durations as seconds or Go duration strings.
func str(v interface{}, name string) (string, *pb.ProtoError) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return "", bad("%s: expected a string", name)
}

func integer(v interface{}, name string) (int64, *pb.ProtoError) {
	switch t := v.(type) {
	case float64:
		if t == float64(int64(t)) {
			return int64(t), nil
		}
	case string:
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, bad("%s: expected an integer", name)
}

func boolean(v interface{}, name string) (bool, *pb.ProtoError) {
	switch t := v.(type) {
	case bool:
		return t, nil
	case string:
		if b, err := strconv.ParseBool(t); err == nil {
			return b, nil
		}
	}
	return false, bad("%s: expected true or false", name)
}

func duration(v interface{}, name string) (time.Duration, *pb.ProtoError) {
	if s, ok := v.(string); ok {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			return d, nil
		}
	}
	if n, err := integer(v, name); err == nil && n > 0 {
		return time.Duration(n) * time.Second, nil
	}
	return 0, bad("%s: expected a positive duration (seconds, or like 30s, 1m)", name)
}

func (m *mount) write(data map[string]interface{}) *pb.ProtoError {
	m.mu.RLock()
	next := config{RequestTimeout: 30 * time.Second, MaxRetries: 3, AutoRotate: true}
	if m.cfg != nil {
		next = *m.cfg
	}
	m.mu.RUnlock()
	var perr *pb.ProtoError
	for name, v := range data {
		switch name {
		case "tenant_url":
			if next.TenantURL, perr = str(v, name); perr == nil {
				if u, err := url.Parse(next.TenantURL); err != nil || u.Scheme != "https" || u.Host == "" {
					perr = bad("tenant_url: expected https://<tenant>")
				}
			}
		case "ca_cert":
			next.CACert, perr = str(v, name)
		case "auto_rotate":
			next.AutoRotate, perr = boolean(v, name)
		case "request_timeout":
			next.RequestTimeout, perr = duration(v, name)
		case "max_retries":
			if next.MaxRetries, perr = integer(v, name); perr == nil && (next.MaxRetries < 0 || next.MaxRetries > 10) {
				perr = bad("max_retries: expected 0 to 10")
			}
		default:
			perr = bad("unknown field %s (accepted: tenant_url, ca_cert, auto_rotate, request_timeout, max_retries)", strconv.Quote(name))
		}
		if perr != nil {
			return perr
		}
	}
	if next.TenantURL == "" {
		return bad("tenant_url: required")
	}
	m.mu.Lock()
	m.cfg = &next
	m.mu.Unlock()
	return nil
}

func (m *mount) Handle(op, path string, data map[string]interface{}) (map[string]interface{}, *pb.ProtoError) {
	if path != "config" {
		return nil, &pb.ProtoError{ErrType: peer.ErrUnsupportedPath, ErrMsg: "unsupported path"}
	}
	switch op {
	case "read":
		m.mu.RLock()
		c := m.cfg
		m.mu.RUnlock()
		if c == nil {
			return nil, nil
		}
		return map[string]interface{}{
			"tenant_url":      c.TenantURL,
			"ca_cert":         c.CACert,
			"ca_cert_set":     c.CACert != "",
			"auto_rotate":     c.AutoRotate,
			"request_timeout": c.RequestTimeout.String(),
			"max_retries":     json.Number(strconv.FormatInt(c.MaxRetries, 10)),
		}, nil
	case "create", "update":
		return nil, m.write(data)
	}
	return nil, &pb.ProtoError{ErrType: peer.ErrUnsupportedOperation, ErrMsg: "unsupported operation"}
}

func (m *mount) Exists(path string) (bool, bool) {
	if path != "config" {
		return false, false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return true, m.cfg != nil
}

func main() {
	peer.Serve(&peer.Backend{New: func() peer.Mount { return &mount{} }, Version: "v0.0.0"})
}
