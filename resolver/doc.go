// Package resolver is peerd's DNS stub (miekg/dns): Consul's query forms
// (NAME.service.consul, TAG.NAME.service.consul, _NAME._TAG.service.consul
// SRV, NODE.node.consul, HEXIP.addr.consul, NAME.connect.consul, SOA/NS of
// the domain) answered from a Source interface, with recursors for other
// names.
//
// It owns the DNS wire behaviour: health filtering (critical instances and
// failed nodes never answered, warning ones unless OnlyPassing), random and
// optionally nearest-first order, UDP answer limits, truncation with the TC
// bit for TCP fallback, EDNS0, NXDOMAIN versus NODATA, forwarding.
//
// resolver never imports peer (or any other peerd package); peer implements
// Source over its replica. See docs/DNS.md.
package resolver
