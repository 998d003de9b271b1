package peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/peerd/peerd/crdt"
)

// gRPC health checks (grpc.health.v1.Health/Check) without a gRPC
// dependency: one unary call is an HTTP/2 POST of a length-prefixed
// protobuf message, and both messages have a single field, so they are
// written and read by hand. GRPC is "host:port" or "host:port/service";
// GRPCUseTLS selects HTTP/2 over TLS (TLSSkipVerify and TLSServerName
// apply), else cleartext HTTP/2 with prior knowledge, as gRPC servers speak.

// grpcHealthPath is the health service's Check method.
const grpcHealthPath = "/grpc.health.v1.Health/Check"

// gRPC health serving statuses.
var grpcServingStatus = map[uint64]string{0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

func grpcProbe(def CheckDefinition) func(context.Context) checkResult {
	target, service, _ := strings.Cut(def.GRPC, "/")
	tr := &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: def.TLSSkipVerify, ServerName: def.TLSServerName, NextProtos: []string{"h2"}},
	}
	tr.Protocols = new(http.Protocols)
	scheme := "http"
	if def.GRPCUseTLS {
		scheme = "https"
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	client := &http.Client{Transport: tr}
	url := scheme + "://" + target + grpcHealthPath
	req := grpcHealthRequest(service)
	return func(ctx context.Context) checkResult {
		fail := func(format string, args ...any) checkResult {
			return checkResult{crdt.StatusCritical, fmt.Sprintf("gRPC health check %s: ", def.GRPC) + fmt.Sprintf(format, args...)}
		}
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req))
		if err != nil {
			return fail("%v", err)
		}
		r.Header.Set("Content-Type", "application/grpc")
		r.Header.Set("TE", "trailers")
		r.Header.Set("User-Agent", checkUserAgent)
		resp, err := client.Do(r)
		if err != nil {
			return fail("%v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return fail("reading the answer: %v", err)
		}
		if resp.StatusCode != http.StatusOK {
			return fail("HTTP status %s", resp.Status)
		}
		st := resp.Trailer.Get("Grpc-Status")
		if st == "" {
			st = resp.Header.Get("Grpc-Status") // trailers-only answer
		}
		if st != "" && st != "0" {
			msg := resp.Trailer.Get("Grpc-Message")
			if msg == "" {
				msg = resp.Header.Get("Grpc-Message")
			}
			return fail("rpc error: code = %s desc = %s", st, msg)
		}
		status, err := grpcHealthStatus(body)
		if err != nil {
			return fail("%v", err)
		}
		name := grpcServingStatus[status]
		if name == "" {
			name = fmt.Sprint(status)
		}
		if status != 1 {
			return fail("status: %s", name)
		}
		return checkResult{crdt.StatusPassing, fmt.Sprintf("gRPC check %s: success", def.GRPC)}
	}
}

// grpcHealthRequest frames HealthCheckRequest{service}.
func grpcHealthRequest(service string) []byte {
	var msg []byte
	if service != "" {
		msg = append(msg, 0x0a) // field 1, length-delimited
		msg = binary.AppendUvarint(msg, uint64(len(service)))
		msg = append(msg, service...)
	}
	out := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// grpcHealthStatus reads HealthCheckResponse.status from a framed answer.
// Unknown fields are skipped; a missing status is UNKNOWN (0).
func grpcHealthStatus(b []byte) (uint64, error) {
	if len(b) < 5 {
		return 0, fmt.Errorf("answer too short (%d bytes)", len(b))
	}
	if b[0] != 0 {
		return 0, fmt.Errorf("compressed answers are not supported")
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(n) > uint64(len(b)-5) {
		return 0, fmt.Errorf("truncated answer")
	}
	msg := b[5 : 5+n]
	var status uint64
	for len(msg) > 0 {
		key, k := binary.Uvarint(msg)
		if k <= 0 {
			return 0, fmt.Errorf("bad protobuf key")
		}
		msg = msg[k:]
		field, wire := key>>3, key&7
		switch wire {
		case 0:
			v, k := binary.Uvarint(msg)
			if k <= 0 {
				return 0, fmt.Errorf("bad protobuf varint")
			}
			msg = msg[k:]
			if field == 1 {
				status = v
			}
		case 2:
			l, k := binary.Uvarint(msg)
			if k <= 0 || l > uint64(len(msg)-k) {
				return 0, fmt.Errorf("bad protobuf length")
			}
			msg = msg[k+int(l):]
		case 1:
			if len(msg) < 8 {
				return 0, fmt.Errorf("bad protobuf fixed64")
			}
			msg = msg[8:]
		case 5:
			if len(msg) < 4 {
				return 0, fmt.Errorf("bad protobuf fixed32")
			}
			msg = msg[4:]
		default:
			return 0, fmt.Errorf("unsupported protobuf wire type %d", wire)
		}
	}
	return status, nil
}
