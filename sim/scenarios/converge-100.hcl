# 100 peers on a LAN-like network: update convergence and transmissions.
name  = "converge-100"
peers = 100
seed  = 1
duration = "120s"

network {
  latency = "1ms"
  jitter  = "1ms"
}

workload {
  rate    = 10
  deletes = 0.1
  keys    = 200
  stop    = "110s"
}

event {
  at     = "90s"
  action = "partition"
  groups = 2
}

event {
  at     = "110s"
  action = "heal"
}

expect {
  converge_within = "60s"
}
