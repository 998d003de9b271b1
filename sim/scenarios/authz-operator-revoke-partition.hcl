# Reproduced a crdt/peer divergence found by the sim (2026-11-22;
# docs/SIM.md, "Found by these checkers", 5): an operator key signs
# intentions on one side of a partition while the root revokes it on the
# other.
#
# The root signs version 1 of each pair; from 1.5 s the operator key signs
# versions 2 and 3. At 5 s the root revokes the operator key on side 2.
# Side 1 merged versions 2 and 3 before the revocation: they supersede
# version 1, and are withdrawn when the revocation arrives
# (crdt.WithdrawIntentions), so no version of the pair applies there.
# Side 2 receives them after the revocation: VerifyIntention refuses them
# (their signer is revoked), so crdt keeps them dead with their context not
# applied, and version 1 still applies there. Digests agree; the pair's
# intention differs for good. Seeds 1 and 2 fail (both operator versions of
# web1 -> db1 were submitted on side 1); seeds 3–6 pass.
# Fixed by 38aa117 (a replicated intention is judged once for good at its
# record's stamp: crdt.IntentionJudge), which the sim mirrors;
# TestOperatorRevokeDuringPartition runs seed 1 as a regression test.
name     = "authz-operator-revoke-partition"
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
  stop            = "4.6s"
  intentions      = 6
  intention_pairs = 2
}

event {
  at     = "1s"
  action = "partition"
  groups = 2
}

event {
  at     = "1.5s"
  action = "delegate"
}

event {
  at       = "5s"
  action   = "revoke"
  operator = true
  group    = 2
}

event {
  at     = "9s"
  action = "heal"
}

expect {
  converge_within = "30s"
}
