# 100 peers on a LAN-like network (1–2 ms links): update convergence and
# transmissions while healthy, then a 50/50 partition with writes on both
# sides; the fault phase ends with the heal (time to equal digests after it).
name  = "converge-100"
peers = 100
seed  = 1
duration = "110s"

network {
  latency = "1ms"
  jitter  = "1ms"
}

workload {
  rate    = 10
  deletes = 0.1
  keys    = 200
}

event {
  at     = "90s"
  action = "partition"
  groups = 2
}

expect {
  converge_within = "60s"
}
