// Package sim runs many real peers over an in-memory network with faults
// (latency, loss, partitions, crashes) in virtual time, replayable by seed,
// with checkers and reports.
//
// sim is imported only by tests and cmd/peerd.
package sim
