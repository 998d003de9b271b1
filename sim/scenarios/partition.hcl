# 50/50 partition with writes on both sides, then heal and converge.
name  = "partition-50-50"
peers = 50
seed  = 1
duration = "40s"

network {
  latency = "10ms"
  jitter  = "5ms"
}

workload {
  rate    = 40      # operations per second, on random live peers
  reads   = 0.3
  deletes = 0.2
  keys    = 100
}

event {
  at     = "5s"
  action = "partition"
  groups = 2
}

event {
  at     = "30s"
  action = "heal"
}

expect {
  converge_within = "10s"
}
