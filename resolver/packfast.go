package resolver

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// maxPointer is the largest offset a compression pointer can hold.
const maxPointer = 0x3FFF

// packFast packs the common answer shape without a compression map: one
// question, answers that are A/AAAA/SRV records owned by the question name,
// additional A/AAAA records owned by SRV targets, an optional OPT, nothing
// in authority. Owner names become pointers to the question or to the SRV
// target already written, which is exactly what the map-based packer
// produces for this shape (SRV targets themselves are never compressed,
// RFC 2782), at a fraction of the cost. ok is false when the message has
// another shape; the caller then packs it the general way. buf must hold
// the uncompressed message and the message must be small enough that every
// offset fits a pointer.
func packFast(m *dns.Msg, buf []byte, targets *[]targetOffset) (b []byte, ok bool) {
	if len(m.Question) != 1 || len(m.Ns) != 0 || !m.Compress {
		return nil, false
	}
	qname := m.Question[0].Name
	for _, rr := range m.Answer {
		switch rr.(type) {
		case *dns.A, *dns.AAAA, *dns.SRV:
		default:
			return nil, false
		}
		if rr.Header().Name != qname || rr.Header().Class != dns.ClassINET {
			return nil, false
		}
	}
	// The header: the same bits the general packer writes.
	bits := uint16(m.Opcode)<<11 | uint16(m.Rcode&0xF)
	if m.Response {
		bits |= flagQR
	}
	if m.Authoritative {
		bits |= flagAA
	}
	if m.Truncated {
		bits |= flagTC
	}
	if m.RecursionDesired {
		bits |= flagRD
	}
	if m.RecursionAvailable {
		bits |= flagRA
	}
	if m.AuthenticatedData {
		bits |= flagAD
	}
	if m.CheckingDisabled {
		bits |= flagCD
	}
	binary.BigEndian.PutUint16(buf[0:], m.Id)
	binary.BigEndian.PutUint16(buf[2:], bits)
	binary.BigEndian.PutUint16(buf[4:], 1)
	binary.BigEndian.PutUint16(buf[6:], uint16(len(m.Answer)))
	binary.BigEndian.PutUint16(buf[8:], 0)
	binary.BigEndian.PutUint16(buf[10:], uint16(len(m.Extra)))
	off, err := dns.PackDomainName(qname, buf, 12, nil, false)
	if err != nil || off+4 > len(buf) {
		return nil, false
	}
	binary.BigEndian.PutUint16(buf[off:], m.Question[0].Qtype)
	binary.BigEndian.PutUint16(buf[off+2:], m.Question[0].Qclass)
	off += 4
	if qname == "." {
		return nil, false // the root name is not compressed; leave it to the general path
	}

	*targets = (*targets)[:0]
	for _, rr := range m.Answer {
		if off+12+rdataMin(rr) > len(buf) {
			return nil, false // cannot happen with a buffer sized for the uncompressed message
		}
		// Owner: pointer to the question name at offset 12.
		hdr := rr.Header()
		off = putRRHeader(buf, off, 0xC000|12, hdr)
		start := off
		switch v := rr.(type) {
		case *dns.A:
			ip := v.A.To4()
			if ip == nil {
				return nil, false
			}
			off += copy(buf[off:], ip)
		case *dns.AAAA:
			if len(v.AAAA) != 16 {
				return nil, false
			}
			off += copy(buf[off:], v.AAAA)
		case *dns.SRV:
			binary.BigEndian.PutUint16(buf[off:], v.Priority)
			binary.BigEndian.PutUint16(buf[off+2:], v.Weight)
			binary.BigEndian.PutUint16(buf[off+4:], v.Port)
			off += 6
			if off > maxPointer || v.Target == "." {
				return nil, false
			}
			*targets = append(*targets, targetOffset{name: v.Target, off: off})
			if off, err = dns.PackDomainName(v.Target, buf, off, nil, false); err != nil {
				return nil, false
			}
		}
		binary.BigEndian.PutUint16(buf[start-2:], uint16(off-start)) // rdlength
	}
	for _, rr := range m.Extra {
		if opt, isOpt := rr.(*dns.OPT); isOpt {
			opt.SetExtendedRcode(uint16(m.Rcode))
			if off, err = dns.PackRR(opt, buf, off, nil, false); err != nil {
				return nil, false
			}
			continue
		}
		if off+12+rdataMin(rr) > len(buf) {
			return nil, false
		}
		hdr := rr.Header()
		ptr := -1
		for _, t := range *targets {
			if t.name == hdr.Name {
				ptr = t.off
				break
			}
		}
		if ptr < 0 || hdr.Class != dns.ClassINET {
			return nil, false
		}
		off = putRRHeader(buf, off, 0xC000|uint16(ptr), hdr)
		start := off
		switch v := rr.(type) {
		case *dns.A:
			ip := v.A.To4()
			if ip == nil {
				return nil, false
			}
			off += copy(buf[off:], ip)
		case *dns.AAAA:
			if len(v.AAAA) != 16 {
				return nil, false
			}
			off += copy(buf[off:], v.AAAA)
		default:
			return nil, false
		}
		binary.BigEndian.PutUint16(buf[start-2:], uint16(off-start))
	}
	return buf[:off], true
}

// rdataMin is the fixed part of an A, AAAA or SRV record's data.
func rdataMin(rr dns.RR) int {
	switch rr.(type) {
	case *dns.A:
		return 4
	case *dns.SRV:
		return 6
	}
	return 16
}

// targetOffset is where an SRV target name was written.
type targetOffset struct {
	name string
	off  int
}

// putRRHeader writes an owner pointer and the fixed RR header fields with a
// zero rdlength (filled in by the caller) and returns the rdata offset.
func putRRHeader(buf []byte, off int, ptr uint16, hdr *dns.RR_Header) int {
	binary.BigEndian.PutUint16(buf[off:], ptr)
	binary.BigEndian.PutUint16(buf[off+2:], hdr.Rrtype)
	binary.BigEndian.PutUint16(buf[off+4:], hdr.Class)
	binary.BigEndian.PutUint32(buf[off+6:], hdr.Ttl)
	binary.BigEndian.PutUint16(buf[off+10:], 0)
	return off + 12
}
