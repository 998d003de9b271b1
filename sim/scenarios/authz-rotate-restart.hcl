# Reproduced a peer bug found by the sim (2026-11-22; docs/SIM.md, "Found
# by these checkers", 7): an agent that trusts R0 and R2 but not R1 cannot
# restart while an intention signed by R1 is live in its replica.
#
# Every peer trusts R0 and R2, half of them R1 too, and all are
# re-certified under R2. R0->R1 at 2 s makes R1 trusted everywhere; the
# root R1 signs version 2 of the pair at 3 s, which every peer merges; R1->R2
# at 4 s retires R1 and withdraws that version (WithdrawIntentions hides
# it, it stays live). Ten peers crash at 6 s and restart at 8 s: the
# replica's LoadState verifies the stored intentions with the fresh trust
# book, which trusts the configured roots only (peer's openStore re-applies
# the stored rotations after LoadState), so on the restarted peers that do
# not trust R1 it fails ("stored intention: … untrusted root"): they cannot
# start again with their data. Every seed tried (1–4) failed. Fixed by
# 38aa117 (stored intentions are decoded without judging their signer:
# crdt.IntentionDecoder), which the sim mirrors; TestRotateRestart runs
# seed 1 as a regression test.
name     = "authz-rotate-restart"
peers    = 30
seed     = 1
duration = "12s"

network {
  latency = "5ms"
  jitter  = "5ms"
}

workload {
  rate            = 20
  reads           = 0.3
  deletes         = 0.2
  keys            = 20
  stop            = "4.5s"
  intentions      = 2
  intention_pairs = 1
}

event {
  at               = "2s"
  action           = "rotate"
  pretrust         = 0.5
  recertify        = "1.5s"
  recertify_newest = true
}

event {
  at     = "4s"
  action = "rotate"
}

event {
  at     = "6s"
  action = "crash"
  count  = 10
}

event {
  at     = "8s"
  action = "restart"
}

expect {
  converge_within = "30s"
}
