//! The CLI's integration tests, one test binary (linking the dependency tree once instead
//! of once per file). Each module is one former `tests/NAME.rs` file; run one with
//! `cargo test --test integration NAME::` (add a test name after it to narrow further).
//! `common` starts `wsctl dev` and talks to it; `deploy_support` runs wsctl against moto.

mod common;
mod deploy_support;

mod adopt_e2e;
mod bench;
mod cli_contract;
mod deploy;
mod deploy_build;
mod deploy_destroy;
mod deploy_iam;
mod deploy_interrupt;
mod deploy_plan;
mod deploy_probe;
mod deploy_production;
mod deploy_region;
mod deploy_rollback;
mod deploy_smoke;
mod deploy_versions;
mod dev_adoption;
mod dev_e2e;
mod faults;
mod history_bounds;
mod hostile;
mod independent_clients;
mod logs;
mod management_api;
mod management_emulation;
mod multi_node;
mod operator_lambda;
mod operator_local;
mod operator_moto;
mod probe;
mod redis_cluster;
mod security_keys;
mod security_secrets;
mod smoke;
mod smoke_deployed;
mod template;
mod template_fanout;
mod template_injection;
mod template_probe;
mod template_production;
mod template_snapshots;
mod timers;
