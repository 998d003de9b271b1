# Intentions and revocations: the sim root signs 12 versions of 3
# source -> destination intentions, submitted at random live peers on both
# sides of a partition; older versions are replayed (as remote records and
# through a peer's API); peer 3's key is revoked and it keeps writing.
# Checkers: no peer ever goes back to an older intention version and every
# live peer ends with the newest; once a peer holds the revocation it
# refuses peer 3's records and traffic, also after a crash and restart.
name     = "authz"
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
  stop            = "10s"
  intentions      = 12   # versions signed by the sim root over [start, stop)
  intention_pairs = 3
}

event {
  at     = "1s"
  action = "partition"
  groups = 2
}

event {
  at     = "4.5s"
  action = "replay_intention"   # an older version, at a random live peer
}

event {
  at     = "7s"
  action = "heal"
}

event {
  at     = "11s"
  action = "replay_intention"
}

event {
  at     = "14s"
  action = "revoke"             # the root revokes peer 3, submitted at a random other peer
  node   = 3
}

event {
  at     = "16s"
  action = "crash"              # restarted peers re-apply the revocations their replica holds
  count  = 3
}

event {
  at     = "17s"
  action = "restart"
}

expect {
  converge_within = "30s"
}
