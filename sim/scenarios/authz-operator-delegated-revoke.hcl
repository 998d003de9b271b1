# Reproduced a divergence found by the sim (2026-11-22; docs/SIM.md,
# "Found by these checkers", 8): a revocation signed by an operator key
# reaches some agents after the root's revocation of that operator key.
#
# The operator key certifies three peers at 0.5 s. During a partition it
# revokes one of them on side 1 (3 s), and the root revokes the operator
# key on side 2 (5 s). Side 1 applies the delegated revocation first: the
# peer is cut at 3 s. Side 2 gets it after the operator's revocation: its
# issuer is revoked, so identity refuses it (not ErrNotYetApplicable) and
# the replica refuses it for good; the peer is cut there only at 5 s. Its
# records stamped in between are dead on side 1, live on side 2, and the
# sides hold different sets of revocations, for good. Seeds 1–4 fail. The
# same choice is documented open for a root's revocation signed shortly
# before the root is retired (docs/REPLICA.md, "Trust statements out of
# order"). Fixed by 93136b9 (a delegated revocation is judged by what
# its issuer was when it signed it); TestOperatorDelegatedRevoke runs seed
# 1 as a regression test.
name     = "authz-operator-delegated-revoke"
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
  at     = "0.5s"
  action = "delegate"
  count  = 3
}
event {
  at     = "1.5s"
  action = "partition"
  groups = 2
}
event {
  at          = "3s"
  action      = "revoke"
  by_operator = true
  group       = 1
}
event {
  at       = "5s"
  action   = "revoke"
  operator = true
  group    = 2
}
event {
  at     = "8s"
  action = "heal"
}
expect {
  converge_within = "30s"
}
