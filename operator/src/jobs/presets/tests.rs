use super::*;
use crate::api::{BackupStorage, DatabasePreset, VolumePreset};

const KINDS: [PresetKind; 5] = [
    PresetKind::Postgres,
    PresetKind::Mysql,
    PresetKind::Redis,
    PresetKind::Mongodb,
    PresetKind::Volume,
];

fn database(image: Option<&str>) -> DatabasePreset {
    DatabasePreset {
        connection_secret: "db-credentials".into(),
        storage: BackupStorage {
            pvc: "backups".into(),
        },
        image: image.map(String::from),
        security_context: None,
    }
}

#[test]
fn every_script_is_valid_sh_and_stops_at_the_first_error() {
    for kind in KINDS {
        for job in [PresetJob::Backup, PresetJob::Restore] {
            let script = script(kind, job);
            assert!(script.contains("set -eu"), "{kind:?} {job:?}");
            assert!(
                !script.contains("-o pipefail"),
                "{kind:?} {job:?}: pipefail is not POSIX"
            );
            let status = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .status()
                .expect("sh runs");
            assert!(status.success(), "{kind:?} {job:?} does not parse");
        }
    }
}

#[test]
fn database_preset_mounts_the_claim_and_reads_the_secret() {
    let preset = BackupPreset::Postgres(database(None));
    let template = preset_template(&preset, PresetJob::Backup);
    let pod = template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let volumes = pod.volumes.unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "backups"
    );
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("postgres:16-alpine"));
    let command = c.command.as_ref().unwrap();
    assert_eq!(&command[..2], ["/bin/sh", "-c"]);
    assert_eq!(command[2], script(PresetKind::Postgres, PresetJob::Backup));
    let mounts = c.volume_mounts.as_ref().unwrap();
    assert_eq!(
        (mounts[0].mount_path.as_str(), mounts[0].read_only),
        (BACKUP_MOUNT, None)
    );
    let env_from = c.env_from.as_ref().unwrap();
    assert_eq!(
        env_from[0].secret_ref.as_ref().unwrap().name,
        "db-credentials"
    );
    let env = c.env.as_ref().unwrap();
    assert_eq!(env[0].name, "APPRELEASE_BACKUP_CLAIM");
    assert_eq!(env[0].value.as_deref(), Some("backups"));
    // No credential is ever written into the Job itself.
    assert!(env.iter().all(|e| !e.name.contains("PASSWORD")));
}

#[test]
fn images_default_per_preset_and_can_be_replaced() {
    let cases = [
        (BackupPreset::Postgres(database(None)), "postgres:16-alpine"),
        (BackupPreset::Mysql(database(None)), "mariadb:11"),
        (BackupPreset::Redis(database(None)), "redis:7-alpine"),
        (BackupPreset::Mongodb(database(None)), "mongo:7"),
        (
            BackupPreset::Mysql(database(Some("mysql:8.4"))),
            "mysql:8.4",
        ),
    ];
    for (preset, image) in cases {
        let pod = preset_template(&preset, PresetJob::Restore).spec.unwrap();
        assert_eq!(pod.containers[0].image.as_deref(), Some(image));
    }
}

#[test]
fn volume_preset_reads_the_claim_read_only_and_restores_read_write() {
    let preset = BackupPreset::Volume(VolumePreset {
        claim: "uploads".into(),
        storage: BackupStorage {
            pvc: "backups".into(),
        },
        image: None,
        security_context: None,
    });
    for (job, read_only) in [(PresetJob::Backup, Some(true)), (PresetJob::Restore, None)] {
        let pod = preset_template(&preset, job).spec.unwrap();
        let data = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().claim_name,
            "uploads"
        );
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().read_only,
            read_only
        );
        let c = &pod.containers[0];
        let mount = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "data")
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (DATA_MOUNT, read_only)
        );
        assert!(c.env_from.is_none(), "the volume preset needs no Secret");
        assert_eq!(c.image.as_deref(), Some("alpine:3.20"));
    }
}

#[test]
fn preset_round_trips_through_yaml_as_an_externally_tagged_enum() {
    let yaml = r#"
template: null
preset:
  mysql:
    connectionSecret: shop-db
    storage: {pvc: shop-backups}
keepLast: 5
maxAge: 30d
"#;
    let spec: crate::api::BackupSpec =
        serde_json::from_value(serde_saphyr::from_str::<serde_json::Value>(yaml).unwrap()).unwrap();
    assert_eq!(spec.keep_last, 5);
    assert_eq!(spec.max_age.as_deref(), Some("30d"));
    assert_eq!(spec.timeout, "30m");
    let preset = spec.preset.unwrap();
    assert_eq!(preset.kind(), PresetKind::Mysql);
    assert_eq!(preset.connection_secret(), Some("shop-db"));
    assert_eq!(preset.storage().pvc, "shop-backups");
}

/// The Pod Security `restricted` rules a preset pod could break (the policy's checks for
/// non-root, privilege escalation, capabilities and seccomp), as the names of the broken ones.
fn restricted_violations(pod: &PodSpec) -> Vec<&'static str> {
    let pod_sc = pod.security_context.clone().unwrap_or_default();
    let mut broken = Vec::new();
    for c in &pod.containers {
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.run_as_non_root.or(pod_sc.run_as_non_root) != Some(true) {
            broken.push("runAsNonRoot");
        }
        if sc.run_as_user.or(pod_sc.run_as_user) == Some(0) {
            broken.push("runAsUser");
        }
        if sc.allow_privilege_escalation != Some(false) {
            broken.push("allowPrivilegeEscalation");
        }
        let drops_all = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            broken.push("capabilities");
        }
        let seccomp = sc.seccomp_profile.or(pod_sc.seccomp_profile.clone());
        if !seccomp.is_some_and(|s| s.type_ == "RuntimeDefault" || s.type_ == "Localhost") {
            broken.push("seccompProfile");
        }
    }
    broken
}

#[test]
fn every_preset_pod_meets_pod_security_restricted_as_its_images_own_user() {
    for kind in KINDS {
        let preset = match kind {
            PresetKind::Postgres => BackupPreset::Postgres(database(None)),
            PresetKind::Mysql => BackupPreset::Mysql(database(None)),
            PresetKind::Redis => BackupPreset::Redis(database(None)),
            PresetKind::Mongodb => BackupPreset::Mongodb(database(None)),
            PresetKind::Volume => BackupPreset::Volume(VolumePreset {
                claim: "uploads".into(),
                storage: BackupStorage {
                    pvc: "backups".into(),
                },
                image: None,
                security_context: None,
            }),
        };
        for job in [PresetJob::Backup, PresetJob::Restore] {
            let pod = preset_template(&preset, job).spec.unwrap();
            assert_eq!(
                restricted_violations(&pod),
                Vec::<&str>::new(),
                "{kind:?} {job:?}"
            );
            let sc = pod.security_context.unwrap();
            assert_eq!(sc.run_as_user, Some(kind.default_user()));
            assert_eq!(
                sc.fs_group,
                Some(kind.default_user()),
                "the claims are writable"
            );
        }
    }
}

#[test]
fn a_given_security_context_replaces_the_default() {
    let mut db = database(None);
    db.security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
        run_as_user: Some(1001),
        run_as_non_root: Some(true),
        ..Default::default()
    });
    let pod = preset_template(&BackupPreset::Postgres(db), PresetJob::Backup)
        .spec
        .unwrap();
    let sc = pod.security_context.as_ref().unwrap();
    assert_eq!((sc.run_as_user, sc.fs_group), (Some(1001), None));
    assert_eq!(
        restricted_violations(&pod),
        ["seccompProfile"],
        "what the user leaves out is theirs to leave out"
    );
}
