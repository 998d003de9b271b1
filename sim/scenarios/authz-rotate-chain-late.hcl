# Reproduced a peer bug found by the sim (2026-11-22; docs/SIM.md, "Found
# by these checkers", 4): a chain under a root an agent does not trust yet
# is dropped, and is not learnt again when a rotation makes that root
# trusted.
#
# Every peer trusts R0 and R2 from the start, half of them R1 too. At
# 0.5 s those that trust R1 are re-certified under it (docs/OPERATIONS.md,
# "Rotating the root", step 2), the others under R2. An agent that does not
# trust R1 drops the R1 chains it meets in node records (trustBook.learn
# keeps a chain that does not verify only if it was cut). R0->R1 at 2 s
# cuts the R0 chains it still holds for those peers, so their records
# stamped after that cut are dead there (renewable OriginRevokedError) —
# until one of them opens a connection to it, or publishes its R2 chain at
# 9 s — and live on the agents that trust R1. Digests agree; reads do
# not: deletes and overwrites by those peers are not applied there, their
# writes are missing. Every seed tried (1–6) failed. Fixed in peer by
# 740cca3 (a chain under a root not trusted yet waits and is adopted when a
# rotation trusts that root; the held node records are learnt again after
# each change of trust), which the sim mirrors: TestRotateChainLearntLate
# runs seed 1 as a regression test, TestRotateChainLearntLateCanFail the
# old behaviour.
name     = "authz-rotate-chain-late"
peers    = 30
seed     = 1
duration = "16s"
skew     = "1s"

network {
  latency = "5ms"
  jitter  = "5ms"
}

workload {
  rate    = 40
  reads   = 0.2
  deletes = 0.1
  keys    = 40
  stop    = "14s"
}

event {
  at        = "2s"
  action    = "rotate"
  pretrust  = 0.5
  recertify = "1.5s"
}

event {
  at        = "10s"
  action    = "rotate"
  recertify = "1s"
}

expect {
  converge_within = "30s"
}
