# 1,000 peers on a LAN-like network: convergence of updates, payload
# transmissions per node per update, then a 50/50 partition and the time to
# equal digests after it heals. About 3.5 virtual minutes with warm-up; writes continue on both sides
# of the partition.
name  = "converge-1000"
peers = 1000
seed  = 1
join_stagger = "10ms"
idle     = "10s"
duration = "170s"

network {
  latency = "1ms"
  jitter  = "1ms"
}

workload {
  rate    = 5
  reads   = 0.0
  deletes = 0.1
  keys    = 500
  start   = "5s"
  stop    = "150s"
}

event {
  at     = "120s"
  action = "partition"
  groups = 2
}

event {
  at     = "150s"
  action = "heal"
}

expect {
  converge_within = "60s"
}
