# NCCL settings worth knowing, to `source` before a multi-node run. Defaults are commented
# out: NCCL usually picks well on one node; across nodes the network choice matters.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then sed -n '1,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0; fi

# Which network interface NCCL's bootstrap and socket transport use (not lo or docker0):
# export NCCL_SOCKET_IFNAME=eth0          # or ^lo,docker0 to exclude
# InfiniBand / RoCE: which HCAs, and disable IB to force sockets when debugging:
# export NCCL_IB_HCA=mlx5_0,mlx5_1
# export NCCL_IB_DISABLE=1
# GPUDirect RDMA level (NIC <-> GPU): PHB/SYS to allow across PCIe host bridges.
# export NCCL_NET_GDR_LEVEL=PHB
# What NCCL chose and why (rings, trees, transports) - first thing to read when slow:
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}     # INFO for topology and transport details
# export NCCL_DEBUG_SUBSYS=INIT,NET
# gpt2_ddp's own NCCL watchdog (src/comm/nccl_communicator.cc) ends a rank whose collective
# has not finished in this many seconds, or at once on an asynchronous NCCL error; mpirun
# then ends the others. Raise it if rank 0's checkpoint saves take longer.
export GPT2_NCCL_TIMEOUT_S=${GPT2_NCCL_TIMEOUT_S:-600}
