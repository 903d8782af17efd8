//! Random workloads against a model.
