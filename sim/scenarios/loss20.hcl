# 20% loss on every link for 30 s (datagrams dropped, streams retransmit),
# with reordering and duplication, then back to a clean network.
name  = "loss-20"
peers = 50
seed  = 1
duration = "40s"

network {
  latency   = "10ms"
  jitter    = "5ms"
  duplicate = 0.01
  reorder   = 0.05
}

workload {
  rate    = 30
  reads   = 0.3
  deletes = 0.2
  keys    = 100
}

event {
  at     = "5s"
  action = "network"
  loss   = 0.2
  latency = "20ms"
}

event {
  at      = "35s"
  action  = "network"
  loss    = 0.0
  latency = "10ms"
}

expect {
  converge_within = "20s"
}
