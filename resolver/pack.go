package resolver

import (
	"encoding/binary"
	"errors"

	"github.com/miekg/dns"
)

// Header flag bits (RFC 1035 4.1.1).
const (
	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagRA = 1 << 7
	flagAD = 1 << 5
	flagCD = 1 << 4
)

// maxMsgSize is the largest DNS message (its TCP length prefix is 16 bits).
const maxMsgSize = 65535

// errTooBig reports a message larger than any DNS message can be.
var errTooBig = errors.New("resolver: message larger than 64 KiB")

// packMsg packs m into sc.buf with name compression, like
// dns.Msg.PackBuffer but reusing the scratch's compression map: miekg
// allocates and grows a fresh map per message, which was most of the cost
// of an answer. Records are packed with miekg's exported dns.PackRR, so the
// wire format is miekg's.
func (sc *scratch) packMsg(m *dns.Msg) ([]byte, error) {
	if m.Rcode < 0 || m.Rcode > 0xFFF {
		return nil, dns.ErrRcode
	}
	// As miekg does, size the buffer for the uncompressed message (cheap to
	// compute: no compression map), so that packing never runs out of room.
	compress := m.Compress
	m.Compress = false
	need := m.Len() + 1
	m.Compress = compress
	if cap(sc.buf) < need {
		sc.buf = make([]byte, 0, need)
	}
	if b, ok := packFast(m, sc.buf[:cap(sc.buf)], &sc.targets); ok {
		return b, nil
	}
	b, err := sc.packInto(m, sc.buf[:cap(sc.buf)])
	if err == nil && len(b) > maxMsgSize {
		return nil, errTooBig
	}
	return b, err
}

func (sc *scratch) packInto(m *dns.Msg, buf []byte) ([]byte, error) {
	if len(buf) < 12 {
		return nil, dns.ErrBuf
	}
	if sc.comp == nil {
		sc.comp = make(map[string]int, 32)
	} else {
		clear(sc.comp)
	}
	bits := uint16(m.Opcode)<<11 | uint16(m.Rcode&0xF)
	for _, f := range []struct {
		set bool
		bit uint16
	}{
		{m.Response, flagQR}, {m.Authoritative, flagAA}, {m.Truncated, flagTC},
		{m.RecursionDesired, flagRD}, {m.RecursionAvailable, flagRA},
		{m.AuthenticatedData, flagAD}, {m.CheckingDisabled, flagCD},
	} {
		if f.set {
			bits |= f.bit
		}
	}
	binary.BigEndian.PutUint16(buf[0:], m.Id)
	binary.BigEndian.PutUint16(buf[2:], bits)
	binary.BigEndian.PutUint16(buf[4:], uint16(len(m.Question)))
	binary.BigEndian.PutUint16(buf[6:], uint16(len(m.Answer)))
	binary.BigEndian.PutUint16(buf[8:], uint16(len(m.Ns)))
	binary.BigEndian.PutUint16(buf[10:], uint16(len(m.Extra)))
	off := 12
	var err error
	for _, q := range m.Question {
		if off, err = dns.PackDomainName(q.Name, buf, off, sc.comp, m.Compress); err != nil {
			return nil, err
		}
		if off+4 > len(buf) {
			return nil, dns.ErrBuf
		}
		binary.BigEndian.PutUint16(buf[off:], q.Qtype)
		binary.BigEndian.PutUint16(buf[off+2:], q.Qclass)
		off += 4
	}
	for _, section := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range section {
			if opt, ok := rr.(*dns.OPT); ok {
				// The upper 8 bits of an extended rcode live in the OPT.
				opt.SetExtendedRcode(uint16(m.Rcode))
			}
			if off, err = dns.PackRR(rr, buf, off, sc.comp, m.Compress); err != nil {
				return nil, err
			}
		}
	}
	return buf[:off], nil
}
