// Package resolver is peerd's DNS stub (miekg/dns): Consul's query forms
// (NAME.service.consul, SRV, NODE.node.consul, ...) answered from a Source
// interface, with recursors for other names.
//
// resolver never imports peer; peer implements Source over its replica.
package resolver
