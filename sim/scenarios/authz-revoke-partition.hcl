# A revocation issued during a partition. Found by the sim (2026-11-22):
# peer 3 writes on its side, its key is revoked on the other side; after
# the heal, the peers that merged peer 3's records before they held the
# revocation kept them, the peers that held it first refused the same
# records (the origin check failed, so crdt kept no dead stub), and the
# digests never agreed: anti-entropy offered the records again in every
# session (seeds 1-5 failed). Passes since crdt keeps a revoked origin's
# records as dead stubs and RevokeOrigins sweeps the replicas that merged
# them first (docs/REPLICA.md, "Revoked origins"; go test ./sim runs seeds
# 1 and 2 in TestRevokeDuringPartition).
name     = "authz-revoke-partition"
peers    = 30
seed     = 1
duration = "20s"

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
  at     = "3s"
  action = "revoke"
  node   = 3
}

event {
  at     = "7s"
  action = "heal"
}

expect {
  converge_within = "30s"
}
