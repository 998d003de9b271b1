# authz-revoke-partition.hcl with the partition lasting to the end of the
# fault phase, so that the heal that ends it is the one the summary
# measures from: "converged after heal" is the time from the partition heal
# to equal digests, "anti-entropy repair after heal" the repair traffic.
# Peer 3 writes on its side of a 50/50 partition, its key is revoked on the
# other side at 3 s, the revoked peer keeps writing from 5 s, everything
# heals at 7 s (the revoked peer is then stopped).
# Before crdt kept a revoked origin's records as dead stubs this never
# converged (docs/SIM.md, "Found by these checkers", 2).
name     = "authz-revoke-heal"
peers    = 30
seed     = 1
duration = "7s"

network {
  latency = "5ms"
  jitter  = "5ms"
}

workload {
  rate            = 20
  reads           = 0.3
  deletes         = 0.2
  keys            = 20
  stop            = "7s"
  intentions      = 6
  intention_pairs = 3
}

event {
  at     = "1s"
  action = "partition"
  groups = 2
}

event {
  at     = "3s"
  action = "revoke"
  node   = 3
}

expect {
  converge_within = "30s"
}
