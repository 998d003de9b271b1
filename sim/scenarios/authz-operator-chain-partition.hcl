# Reproduces a peer divergence found by the sim (2026-11-22; docs/SIM.md,
# "Found by these checkers", 6): a node re-certified under an operator key
# during a partition, the operator key revoked on the other side.
#
# Every peer starts with a chain issued by the root. At 2 s the root
# certifies an operator key, which certifies two peers under itself; they
# publish their new chains in their node records, which reach only their
# own side. At 4 s the root revokes the operator key on side 1. The agents
# of the other side replaced the two peers' root-issued chains by the
# operator-issued ones (they verified then), so after the revocation
# arrives they cut those peers at its time: their later records are dead
# there. The agents of side 1 never held the operator-issued chains while
# they verified; when they met them (after the revocation) trustBook.learn
# kept the root-issued chain, which still verifies, so the same records
# were live there. Equal digests; the two peers' later records live on one
# side, dead on the other, for good: seeds 1-4 failed with the sim
# mirroring peer at 016c2ad. Fixed by c3df043 (a node is judged by the
# chain of its newest node record, trustBook.learnRecord);
# TestOperatorChainDuringPartition runs seeds 1 and 2.
name     = "authz-operator-chain-partition"
peers    = 30
seed     = 1
duration = "16s"
skew     = "1s"

network {
  latency = "5ms"
  jitter  = "5ms"
}

workload {
  rate    = 20
  reads   = 0.3
  deletes = 0.2
  keys    = 20
  stop    = "14s"
}

event {
  at     = "1s"
  action = "partition"
  groups = 2
}

event {
  at     = "2s"
  action = "delegate"
  count  = 2
}

event {
  at       = "4s"
  action   = "revoke"
  operator = true
  group    = 1
}

expect {
  converge_within = "30s"
}
