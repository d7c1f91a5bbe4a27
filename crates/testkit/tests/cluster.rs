//! The loopback test cluster, driven as its users drive it: an unmodified `kube::Client`,
//! Debian's kubectl, and the fake kubelet over real containerd nodes. One test binary (a
//! single link of kube and k8s-openapi); each area is a module.

mod cluster {
    pub mod api;
    pub mod kubectl;
    pub mod kubelet;
    pub mod rbac;
    pub mod support;
}
