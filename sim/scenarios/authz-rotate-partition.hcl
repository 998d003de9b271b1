# Two root rotations, R0->R1 then R1->R2, submitted on opposite sides of a
# partition, an operator key delegated and then revoked, crashes.
#
# Every peer trusts R0 and R2 from the start (docs/OPERATIONS.md, "Rotating
# the root", step 1, done for the target root), half of them R1 too, and
# every peer but one is re-certified under R2 before the first rotation
# (step 2); the one left on its R0 certificate is cut off by R0->R1 and
# keeps writing. R0->R1 is submitted on side 1, R1->R2 on side 2 at a peer
# that trusts R1: the side-2 peers that do not trust R1 receive R1->R2
# before R0->R1, hold it (crdt.ErrNotYetApplicable) and apply it when
# R0->R1 arrives at the heal (RetryStatements). The operator key,
# certified by R2, signs the intentions issued from 5 s until the root
# revokes it at 11 s, and certifies two peers under itself; at the
# revocation what it signed is withdrawn everywhere and those two peers
# are cut (they keep writing). The operator revokes none of them itself
# (by_operator): a delegated revocation that reaches a peer after the
# operator's own revocation is refused there for good
# (authz-operator-delegated-revoke.hcl, an open bug).
# go test ./sim runs seeds 1 and 2 (TestRotateDuringPartition).
name     = "authz-rotate-partition"
peers    = 30
seed     = 1
duration = "20s"
skew     = "1s"

network {
  latency = "5ms"
  jitter  = "5ms"
}

workload {
  rate            = 20
  reads           = 0.3
  deletes         = 0.2
  keys            = 20
  stop            = "18s"
  intentions      = 12
  intention_pairs = 3
}

event {
  at     = "1s"
  action = "partition"
  groups = 2
}

event {
  at        = "2.5s"
  action    = "rotate"
  group     = 1
  pretrust  = 0.5
  recertify = "2s"
  stale     = 1

  # Re-certify under R2 at once. With certificates under R1 (then under
  # R2 1 s before R1->R2), an agent on the other side of the partition
  # that meets a peer's fresh records (relayed by Plumtree at the heal)
  # before that peer's node record with its R2 chain (repaired by
  # anti-entropy) judges them by the R1 chain R1->R2 cut: dead there, live
  # elsewhere (seeds 1, 2 and 5 of 5; docs/REPLICA.md, "Cut-off origins",
  # what stays open; docs/SIM.md, "Found by these checkers", 10).
  recertify_newest = true
}

event {
  at     = "4s"
  action = "rotate"
  group  = 2
}

event {
  at     = "5s"
  action = "delegate"
  count  = 2
}

event {
  at     = "7s"
  action = "heal"
}

event {
  at       = "11s"
  action   = "revoke"
  operator = true
}

event {
  at     = "13s"
  action = "crash"
  count  = 3
}

event {
  at     = "15s"
  action = "restart"
}

expect {
  converge_within = "30s"
}
