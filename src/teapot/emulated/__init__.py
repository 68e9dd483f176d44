"""The box's emulated hosts acting on what they were handed: once Ironic has deployed a host, its
network data configures its namespace's NIC and its user data runs, as cloud-init would run them
on a real machine (`host`), with a stand-in kubelet where a real one cannot run (`kubelet`). The
box's `teapot-hosts` service (`agent`) watches Ironic and boots and halts them."""
