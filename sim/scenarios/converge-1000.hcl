# 1,000 peers on a LAN-like network (1–2 ms links): convergence of updates
# and payload transmissions per node per update while healthy, then a
# 50/50 partition with writes on both sides; the fault phase ends with the
# heal, and the report gives the time to equal digests after it.
name  = "converge-1000"
peers = 1000
seed  = 1
join_stagger = "10ms"
idle     = "10s"
duration = "120s"

network {
  latency = "1ms"
  jitter  = "1ms"
}

workload {
  rate    = 5
  deletes = 0.1
  keys    = 500
}

event {
  at     = "90s"
  action = "partition"
  groups = 2
}

expect {
  converge_within = "120s"
}
