use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::fixtures::{at, container, digest_hex, id, image, sandbox};
use crate::inventory::{Container, ContainerState, ImageId, Inventory, SandboxState};
use crate::pattern::{ListKind, PatternSet};
use crate::usage::{running_images, sandbox_images};

const NOW: u64 = 1_000_000;
const DAY: Duration = Duration::from_secs(86_400);

struct Case {
    inventory: Inventory,
    references: References,
    last_seen: LastSeen,
    vulnerable: BTreeMap<ImageId, Vec<String>>,
}

impl Case {
    fn new(inventory: Inventory) -> Self {
        Case {
            inventory,
            references: References::default(),
            last_seen: LastSeen::default(),
            vulnerable: BTreeMap::new(),
        }
    }

    fn plan(&self, policy: &Policy) -> Plan {
        plan(
            &PlanInput {
                inventory: &self.inventory,
                references: &self.references,
                last_seen: &self.last_seen,
                vulnerable: &self.vulnerable,
                now: at(NOW),
            },
            policy,
        )
    }
}

/// Name, setup, policy, expected reason, expected matched text.
type Row<'a> = (
    &'a str,
    Box<dyn FnOnce(&mut Case)>,
    Policy,
    Reason,
    Option<&'a str>,
);

fn scheduled(exclusions: &[&str]) -> Policy {
    Policy {
        exclusions: PatternSet::parse_strict(ListKind::Exclusion, exclusions).unwrap(),
        removal: None,
        min_unused: DAY,
    }
}

fn removal(exclusions: &[&str], listed: &[&str]) -> Policy {
    Policy {
        removal: Some(PatternSet::parse_strict(ListKind::Removal, listed).unwrap()),
        ..scheduled(exclusions)
    }
}

/// One image, set up by `setup`, planned under `policy`: its reason and matched text.
fn decide_one(setup: impl FnOnce(&mut Case), policy: &Policy) -> (Reason, Option<String>) {
    let mut case = Case::new(Inventory {
        images: vec![image(
            1,
            &[
                "docker.io/library/nginx:1.25",
                "docker.io/library/nginx:latest",
            ],
            &[&format!("docker.io/library/nginx@sha256:{}", digest_hex(1))],
        )],
        sandboxes: vec![
            sandbox("up", SandboxState::Ready),
            sandbox("down", SandboxState::NotReady),
        ],
        ..Inventory::default()
    });
    setup(&mut case);
    let plan = case.plan(policy);
    assert_eq!(plan.entries.len(), 1);
    let entry = &plan.entries[0];
    (entry.reason, entry.matched.clone())
}

fn run(state: ContainerState, pod: &str) -> impl FnOnce(&mut Case) {
    let pod = pod.to_owned();
    move |case: &mut Case| {
        case.inventory
            .containers
            .push(container("c", "nginx:1.25", state, &pod));
    }
}

#[test]
fn each_reason_in_scheduled_mode() {
    let vulnerable = |case: &mut Case| {
        case.vulnerable
            .insert(id(1), vec!["CVE-1".into(), "CVE-2".into()]);
    };
    let cases: Vec<Row<'_>> = vec![
        (
            "nothing uses it",
            Box::new(|_: &mut Case| {}),
            scheduled(&[]),
            Reason::Unused,
            None,
        ),
        (
            "running container",
            Box::new(run(ContainerState::Running, "down")),
            scheduled(&[]),
            Reason::Running,
            None,
        ),
        (
            "created container",
            Box::new(run(ContainerState::Created, "down")),
            scheduled(&[]),
            Reason::Running,
            None,
        ),
        (
            "unknown container",
            Box::new(run(ContainerState::Unknown, "down")),
            scheduled(&[]),
            Reason::Running,
            None,
        ),
        (
            "exited in ready pod",
            Box::new(run(ContainerState::Exited, "up")),
            scheduled(&[]),
            Reason::Running,
            None,
        ),
        (
            "exited in stopped pod, long ago",
            Box::new(run(ContainerState::Exited, "down")),
            scheduled(&[]),
            Reason::Unused,
            None,
        ),
        (
            "sandbox image",
            Box::new(|c: &mut Case| c.inventory.sandbox_images.push("nginx:latest".into())),
            scheduled(&[]),
            Reason::Sandbox,
            None,
        ),
        (
            "pinned",
            Box::new(|c: &mut Case| c.inventory.images[0].pinned = true),
            scheduled(&[]),
            Reason::Pinned,
            None,
        ),
        (
            "excluded by alias",
            Box::new(|_: &mut Case| {}),
            scheduled(&["nginx"]),
            Reason::Excluded,
            Some("docker.io/library/nginx:latest"),
        ),
        (
            "excluded by repo",
            Box::new(|_: &mut Case| {}),
            scheduled(&["docker.io/library/nginx:*"]),
            Reason::Excluded,
            Some("docker.io/library/nginx:*"),
        ),
        (
            "excluded by prefix",
            Box::new(|_: &mut Case| {}),
            scheduled(&["docker.io/library/*"]),
            Reason::Excluded,
            Some("docker.io/library/*"),
        ),
        (
            "not excluded by another",
            Box::new(|_: &mut Case| {}),
            scheduled(&["quay.io/*", "nginx:1.24"]),
            Reason::Unused,
            None,
        ),
        (
            "referenced by tag",
            Box::new(|c: &mut Case| c.references = References::new(["nginx:1.25"])),
            scheduled(&[]),
            Reason::Referenced,
            None,
        ),
        (
            "referenced by digest",
            Box::new(|c: &mut Case| {
                c.references = References::new([format!("nginx@sha256:{}", digest_hex(1))])
            }),
            scheduled(&[]),
            Reason::Referenced,
            None,
        ),
        (
            "referenced by id",
            Box::new(|c: &mut Case| c.references = References::new([id(1).to_string()])),
            scheduled(&[]),
            Reason::Referenced,
            None,
        ),
        (
            "reference to another tag",
            Box::new(|c: &mut Case| c.references = References::new(["nginx:1.26"])),
            scheduled(&[]),
            Reason::Unused,
            None,
        ),
        (
            "pulled recently",
            Box::new(|c: &mut Case| c.inventory.images[0].pulled_at = Some(at(NOW - 60))),
            scheduled(&[]),
            Reason::Recent,
            None,
        ),
        (
            "pulled long ago",
            Box::new(|c: &mut Case| c.inventory.images[0].pulled_at = Some(at(NOW - 2 * 86_400))),
            scheduled(&[]),
            Reason::Unused,
            None,
        ),
        (
            "seen in use recently",
            Box::new(|c: &mut Case| c.last_seen.record([&id(1)], at(NOW - 60))),
            scheduled(&[]),
            Reason::Recent,
            None,
        ),
        (
            "exited container finished recently",
            Box::new(|c: &mut Case| {
                let mut exited = container("c", &id(1).to_string(), ContainerState::Exited, "gone");
                exited.finished_at = Some(at(NOW - 60));
                c.inventory.containers.push(exited);
            }),
            scheduled(&[]),
            Reason::Recent,
            None,
        ),
        (
            "used in the future (clock skew)",
            Box::new(|c: &mut Case| c.inventory.images[0].pulled_at = Some(at(NOW + 60))),
            scheduled(&[]),
            Reason::Recent,
            None,
        ),
        (
            "vulnerable",
            Box::new(vulnerable),
            scheduled(&[]),
            Reason::Vulnerable,
            Some("CVE-1,CVE-2"),
        ),
        (
            "vulnerable overrides referenced and recent",
            Box::new(move |c: &mut Case| {
                vulnerable(c);
                c.references = References::new(["nginx"]);
                c.inventory.images[0].pulled_at = Some(at(NOW));
            }),
            scheduled(&[]),
            Reason::Vulnerable,
            Some("CVE-1,CVE-2"),
        ),
        (
            "vulnerable but running",
            Box::new(move |c: &mut Case| {
                vulnerable(c);
                run(ContainerState::Running, "down")(c);
            }),
            scheduled(&[]),
            Reason::Running,
            None,
        ),
        (
            "vulnerable but excluded",
            Box::new(vulnerable),
            scheduled(&["nginx:1.25"]),
            Reason::Excluded,
            Some("docker.io/library/nginx:1.25"),
        ),
    ];
    for (name, setup, policy, reason, matched) in cases {
        assert_eq!(
            decide_one(setup, &policy),
            (reason, matched.map(str::to_owned)),
            "{name}"
        );
    }
}

#[test]
fn each_reason_in_removal_list_mode() {
    let first_id = id(1);
    let recent_and_referenced = |c: &mut Case| {
        c.references = References::new(["nginx"]);
        c.inventory.images[0].pulled_at = Some(at(NOW));
    };
    let cases: Vec<Row<'_>> = vec![
        (
            "listed by tag",
            Box::new(|_: &mut Case| {}),
            removal(&[], &["nginx:1.25"]),
            Reason::Listed,
            Some("docker.io/library/nginx:1.25"),
        ),
        (
            "listed ignores references and age",
            Box::new(recent_and_referenced),
            removal(&[], &["nginx"]),
            Reason::Listed,
            Some("docker.io/library/nginx:latest"),
        ),
        (
            "everything",
            Box::new(|_: &mut Case| {}),
            removal(&[], &["*"]),
            Reason::Listed,
            Some("*"),
        ),
        (
            "listed by short id",
            Box::new(|_: &mut Case| {}),
            removal(&[], &[first_id.hex()]),
            Reason::Listed,
            Some(first_id.hex()),
        ),
        (
            "not listed",
            Box::new(|_: &mut Case| {}),
            removal(&[], &["nginx:1.26"]),
            Reason::NotListed,
            None,
        ),
        (
            "empty list",
            Box::new(|_: &mut Case| {}),
            removal(&[], &[]),
            Reason::NotListed,
            None,
        ),
        (
            "not listed but vulnerable",
            Box::new(|c: &mut Case| {
                c.vulnerable.insert(id(1), vec!["CVE-9".into()]);
            }),
            removal(&[], &["busybox"]),
            Reason::Vulnerable,
            Some("CVE-9"),
        ),
        (
            "listed but running",
            Box::new(run(ContainerState::Running, "down")),
            removal(&[], &["*"]),
            Reason::Running,
            None,
        ),
        (
            "listed but excluded",
            Box::new(|_: &mut Case| {}),
            removal(&["nginx:*"], &["*"]),
            Reason::Excluded,
            Some("docker.io/library/nginx:*"),
        ),
        (
            "listed but sandbox",
            Box::new(|c: &mut Case| c.inventory.sandbox_images.push(id(1).to_string())),
            removal(&[], &["*"]),
            Reason::Sandbox,
            None,
        ),
        (
            "listed but pinned",
            Box::new(|c: &mut Case| c.inventory.images[0].pinned = true),
            removal(&[], &["*"]),
            Reason::Pinned,
            None,
        ),
    ];
    for (name, setup, policy, reason, matched) in cases {
        assert_eq!(
            decide_one(setup, &policy),
            (reason, matched.map(str::to_owned)),
            "{name}"
        );
    }
}

#[test]
fn reasons_are_stable_strings() {
    let names: Vec<&str> = Reason::ALL.iter().map(Reason::as_str).collect();
    assert_eq!(
        names,
        [
            "running",
            "sandbox",
            "pinned",
            "excluded",
            "referenced",
            "recent",
            "not-listed",
            "unused",
            "listed",
            "vulnerable"
        ]
    );
    let removing: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|r| r.decision() == Decision::Remove)
        .collect();
    assert_eq!(
        removing,
        [Reason::Unused, Reason::Listed, Reason::Vulnerable]
    );
    assert_eq!(Decision::Keep.as_str(), "keep");
    assert_eq!(Decision::Remove.to_string(), "remove");
    assert_eq!(Reason::NotListed.to_string(), "not-listed");
}

#[test]
fn plan_totals() {
    let mut case = Case::new(Inventory {
        images: vec![
            image(1, &["a:1"], &[]),
            Image {
                reclaimable_bytes: None,
                ..image(2, &["b:1"], &[])
            },
            image(3, &["c:1"], &[]),
            image(4, &[], &[]),
        ],
        containers: vec![container("c", "c:1", ContainerState::Running, "s")],
        ..Inventory::default()
    });
    case.references = ["a:1".to_owned()].into_iter().collect();
    let plan = case.plan(&scheduled(&[]));
    let reasons: Vec<Reason> = plan.entries.iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        [
            Reason::Referenced,
            Reason::Unused,
            Reason::Running,
            Reason::Unused
        ]
    );
    assert_eq!(plan.to_remove().count(), 2);
    assert_eq!(plan.kept().count(), 2);
    // Image 2's layers are unknown: counted as 0.
    assert_eq!(plan.reclaimable_bytes(), 100);
    assert_eq!(plan.count_by_reason()[&Reason::Unused], 2);
}

#[test]
fn digest_only_and_aliased_images() {
    let digest_only = image(2, &[], &[&format!("quay.io/a/b@sha256:{}", digest_hex(2))]);
    let aliased = image(
        3,
        &[
            "docker.io/library/app:1",
            "quay.io/mirror/app:1",
            "localhost:5000/app:1",
        ],
        &[],
    );
    let case = Case::new(Inventory {
        images: vec![digest_only, aliased],
        ..Inventory::default()
    });
    for exclusion in ["localhost:5000/app:*", "quay.io/mirror/*", "app:1"] {
        let plan = case.plan(&scheduled(&[exclusion]));
        assert_eq!(plan.entries[1].reason, Reason::Excluded, "{exclusion}");
        assert_eq!(plan.entries[0].reason, Reason::Unused, "{exclusion}");
    }
    let plan = case.plan(&scheduled(&["quay.io/a/b:*"]));
    assert_eq!(plan.entries[0].reason, Reason::Excluded);
    assert_eq!(plan.entries[1].reason, Reason::Unused);
    let plan = case.plan(&removal(&[], &[&format!("sha256:{}", digest_hex(2))]));
    assert_eq!(plan.entries[0].reason, Reason::Listed);
    assert_eq!(plan.entries[1].reason, Reason::NotListed);
}

#[test]
fn scales_to_a_thousand_images_and_containers() {
    let images: Vec<Image> = (0..1000u32)
        .map(|n| {
            image(
                n,
                &[&format!(
                    "registry.example.com/team{}/app{n}:v{}",
                    n % 10,
                    n % 7
                )],
                &[&format!(
                    "registry.example.com/team{}/app{n}@sha256:{}",
                    n % 10,
                    digest_hex(n)
                )],
            )
        })
        .collect();
    let containers: Vec<Container> = (0..1000u32)
        .map(|n| {
            let mut c = container(
                &format!("c{n}"),
                &images[(n * 7 % 1000) as usize].names[0],
                ContainerState::Exited,
                "s",
            );
            c.image_ref = images[(n * 7 % 1000) as usize].digests[0].clone();
            c.image_id = id(n * 7 % 1000).to_string();
            c
        })
        .collect();
    let mut case = Case::new(Inventory {
        images,
        containers,
        sandboxes: vec![sandbox("s", SandboxState::Ready)],
        ..Inventory::default()
    });
    case.references = References::new(
        (0..1000u32).map(|n| format!("registry.example.com/team{}/app{n}:v{}", n % 10, n % 7)),
    );
    let plan = case.plan(&scheduled(&[
        "registry.example.com/team3/*",
        "registry.example.com/team4/app4:*",
    ]));
    assert_eq!(plan.entries.len(), 1000);
    assert!(plan.entries.iter().all(|e| e.reason == Reason::Running));
}

// Property tests: random inventories built from a small pool of names so that names, aliases
// and digests are shared between images, containers, references and lists.

const REPOSITORIES: [&str; 7] = [
    "nginx",
    "docker.io/library/alpine",
    "quay.io/a/b",
    "localhost:5000/app",
    "localhost:5000/app2",
    "localhost/app",
    "mcr.microsoft.com/oss/pause",
];
const TAGS: [&str; 3] = ["latest", "1", "2"];
const PREFIXES: [&str; 6] = [
    "docker.io/library",
    "localhost:5000",
    "localhost",
    "quay.io",
    "mcr.microsoft.com",
    "myorg",
];

/// IDs whose short forms differ, so short-ID strings name one image.
fn spread_id(n: usize) -> ImageId {
    ImageId::new(format!("sha256:{}", format!("{:02x}", n + 1).repeat(32)))
}

fn name_of(repository: usize, tag: usize) -> String {
    format!("{}:{}", REPOSITORIES[repository], TAGS[tag])
}

fn repo_digest_of(repository: usize, digest: u32) -> String {
    format!("{}@sha256:{}", REPOSITORIES[repository], digest_hex(digest))
}

#[derive(Clone, Debug)]
enum ImageString {
    Id(usize),
    ShortId(usize),
    Name(usize, usize),
    RepoDigest(usize, u32),
    BareDigest(u32),
    Unknown,
}

impl ImageString {
    fn render(&self, images: usize) -> String {
        match *self {
            ImageString::Id(n) => spread_id(n % images.max(1)).to_string(),
            ImageString::ShortId(n) => spread_id(n % images.max(1)).short().to_owned(),
            ImageString::Name(r, t) => name_of(r, t),
            ImageString::RepoDigest(r, d) => repo_digest_of(r, d),
            ImageString::BareDigest(d) => format!("sha256:{}", digest_hex(d)),
            ImageString::Unknown => "example.com/unknown:1".to_owned(),
        }
    }
}

fn image_string() -> impl Strategy<Value = ImageString> {
    prop_oneof![
        (0..8usize).prop_map(ImageString::Id),
        (0..8usize).prop_map(ImageString::ShortId),
        (0..7usize, 0..3usize).prop_map(|(r, t)| ImageString::Name(r, t)),
        (0..7usize, 0..4u32).prop_map(|(r, d)| ImageString::RepoDigest(r, d)),
        (0..4u32).prop_map(ImageString::BareDigest),
        Just(ImageString::Unknown),
    ]
}

fn time() -> impl Strategy<Value = Option<SystemTime>> {
    proptest::option::of((NOW - 3 * 86_400..NOW + 100).prop_map(at))
}

fn images() -> impl Strategy<Value = Vec<Image>> {
    let one = (
        proptest::collection::vec((0..7usize, 0..3usize), 0..3),
        proptest::collection::vec((0..7usize, 0..4u32), 0..2),
        proptest::bool::weighted(0.1),
        time(),
        proptest::option::of(0..1000u64),
    );
    proptest::collection::vec(one, 0..8).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(
                |(n, (names, digests, pinned, pulled_at, reclaimable_bytes))| Image {
                    id: spread_id(n),
                    names: names.into_iter().map(|(r, t)| name_of(r, t)).collect(),
                    digests: digests
                        .into_iter()
                        .map(|(r, d)| repo_digest_of(r, d))
                        .collect(),
                    size_bytes: 1000,
                    reclaimable_bytes,
                    pinned,
                    pulled_at,
                },
            )
            .collect()
    })
}

fn container_state() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        Just(ContainerState::Created),
        Just(ContainerState::Running),
        Just(ContainerState::Exited),
        Just(ContainerState::Unknown),
    ]
}

fn sandbox_state() -> impl Strategy<Value = SandboxState> {
    prop_oneof![Just(SandboxState::Ready), Just(SandboxState::NotReady)]
}

fn list_entry(allow_everything: bool) -> impl Strategy<Value = String> {
    let everything = if allow_everything { 1 } else { 0 };
    prop_oneof![
        3 => (0..7usize, 0..3usize).prop_map(|(r, t)| name_of(r, t)),
        1 => (0..7usize).prop_map(|r| REPOSITORIES[r].to_owned()),
        2 => (0..7usize).prop_map(|r| format!("{}:*", REPOSITORIES[r])),
        2 => (0..6usize).prop_map(|p| format!("{}/*", PREFIXES[p])),
        1 => (0..7usize, 0..4u32).prop_map(|(r, d)| repo_digest_of(r, d)),
        1 => (0..4u32).prop_map(|d| format!("sha256:{}", digest_hex(d))),
        1 => (0..8usize).prop_map(|n| spread_id(n).short().to_owned()),
        everything => Just("*".to_owned()),
        1 => Just("Not Valid".to_owned()),
    ]
}

#[derive(Clone, Debug)]
struct World {
    inventory: Inventory,
    references: Vec<ImageString>,
    exclusions: Vec<String>,
    removal: Option<Vec<String>>,
    vulnerable: Vec<usize>,
    last_seen: Vec<(usize, Option<SystemTime>)>,
    min_unused_secs: u64,
}

fn world() -> impl Strategy<Value = World> {
    let containers = proptest::collection::vec(
        (
            image_string(),
            image_string(),
            proptest::option::of(image_string()),
            container_state(),
            0..4usize,
            time(),
            time(),
        ),
        0..10,
    );
    (
        images(),
        containers,
        proptest::collection::vec(sandbox_state(), 3),
        proptest::collection::vec(image_string(), 0..2),
        proptest::collection::vec(image_string(), 0..5),
        proptest::collection::vec(list_entry(true), 0..4),
        proptest::option::of(proptest::collection::vec(list_entry(true), 0..4)),
        proptest::collection::vec(0..8usize, 0..3),
        proptest::collection::vec((0..8usize, time()), 0..3),
        0..(3 * 86_400u64),
    )
        .prop_map(
            |(
                images,
                containers,
                sandbox_states,
                sandbox_refs,
                references,
                exclusions,
                removal,
                vulnerable,
                last_seen,
                min_unused_secs,
            )| {
                let count = images.len();
                let containers = containers
                    .into_iter()
                    .enumerate()
                    .map(
                        |(n, (image, image_ref, image_id, state, pod, created, finished))| {
                            Container {
                                image: image.render(count),
                                image_ref: image_ref.render(count),
                                image_id: image_id.map(|s| s.render(count)).unwrap_or_default(),
                                created_at: created,
                                finished_at: finished,
                                ..container(&format!("c{n}"), "", state, &format!("pod{pod}"))
                            }
                        },
                    )
                    .collect();
                let sandboxes = sandbox_states
                    .into_iter()
                    .enumerate()
                    .map(|(n, state)| sandbox(&format!("pod{n}"), state))
                    .collect();
                World {
                    inventory: Inventory {
                        images,
                        containers,
                        sandboxes,
                        sandbox_images: sandbox_refs.iter().map(|s| s.render(count)).collect(),
                    },
                    references,
                    exclusions,
                    removal,
                    vulnerable,
                    last_seen,
                    min_unused_secs,
                }
            },
        )
}

struct Planned {
    case: Case,
    policy: Policy,
    plan: Plan,
}

fn plan_world(world: &World) -> Planned {
    let count = world.inventory.images.len();
    let mut case = Case::new(world.inventory.clone());
    case.references = world.references.iter().map(|s| s.render(count)).collect();
    for &n in &world.vulnerable {
        if n < count {
            case.vulnerable
                .insert(spread_id(n), vec![format!("CVE-{n}")]);
        }
    }
    for &(n, seen) in &world.last_seen {
        if let Some(seen) = seen {
            case.last_seen.record([&spread_id(n)], seen);
        }
    }
    let (exclusions, errors) = PatternSet::parse_lenient(ListKind::Exclusion, &world.exclusions);
    for error in &errors {
        assert!(
            error.entry() == "*" || error.entry() == "Not Valid",
            "unexpected error {error}"
        );
    }
    let removal = world
        .removal
        .as_ref()
        .map(|entries| PatternSet::parse_lenient(ListKind::Removal, entries).0);
    let policy = Policy {
        exclusions,
        removal,
        min_unused: Duration::from_secs(world.min_unused_secs),
    };
    let plan = case.plan(&policy);
    Planned { case, policy, plan }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_removes_protected_images(world in world()) {
        let Planned { case, policy, plan } = plan_world(&world);
        let inventory = &case.inventory;
        let running = running_images(inventory);
        let sandboxes = sandbox_images(inventory);
        prop_assert_eq!(plan.entries.len(), inventory.images.len());
        for (entry, image) in plan.entries.iter().zip(&inventory.images) {
            prop_assert_eq!(&entry.image, image);
            if entry.decision() != Decision::Remove {
                continue;
            }
            prop_assert!(!running.contains(&image.id), "removes running {:?}", entry);
            prop_assert!(!sandboxes.contains(&image.id), "removes sandbox {:?}", entry);
            prop_assert!(!image.pinned, "removes pinned {:?}", entry);
            prop_assert!(policy.exclusions.matches(image).is_none(), "removes excluded {:?}", entry);
            // Independent of the index: literal names and IDs protect too.
            for container in &inventory.containers {
                let in_ready_pod = inventory
                    .sandboxes
                    .iter()
                    .any(|s| s.id == container.sandbox_id && s.state == SandboxState::Ready);
                let counts = container.state != ContainerState::Exited || in_ready_pod;
                let names_it = container
                    .image_strings()
                    .any(|s| s == image.id.as_str() || image.names.iter().any(|n| n == s) || image.digests.iter().any(|d| d == s));
                prop_assert!(!(counts && names_it), "removes image of {:?}: {:?}", container, entry);
            }
            for exclusion in &world.exclusions {
                prop_assert!(
                    !image.names.iter().chain(&image.digests).any(|n| n == exclusion),
                    "removes {:?} excluded by {:?}", entry, exclusion
                );
            }
            for sandbox_image in &inventory.sandbox_images {
                prop_assert!(!image.names.contains(sandbox_image) && image.id.as_str() != sandbox_image);
            }
        }
    }

    #[test]
    fn scheduled_runs_keep_referenced_and_recent_images(mut world in world()) {
        world.removal = None;
        let Planned { case, policy, plan } = plan_world(&world);
        let index = case.inventory.index();
        let uses = crate::usage::last_use(&case.inventory, &case.last_seen);
        for entry in &plan.entries {
            prop_assert!(!matches!(entry.reason, Reason::Listed | Reason::NotListed));
            if entry.decision() != Decision::Remove || entry.reason == Reason::Vulnerable {
                continue;
            }
            prop_assert_eq!(entry.reason, Reason::Unused);
            prop_assert!(!case.vulnerable.contains_key(&entry.image.id));
            for reference in case.references.iter() {
                prop_assert!(!index.resolve_all(reference).contains(&&entry.image.id), "removes {:?} referenced as {}", entry, reference);
                prop_assert!(reference != entry.image.id.as_str() && !entry.image.names.iter().any(|n| n == reference));
            }
            if let Some(used) = uses.get(&entry.image.id) {
                let age = at(NOW).duration_since(*used).unwrap_or_default();
                prop_assert!(age >= policy.min_unused, "removes recent {:?}", entry);
            }
            prop_assert_eq!(entry.last_used, uses.get(&entry.image.id).copied());
        }
    }

    #[test]
    fn removal_lists_ignore_references_and_age(mut world in world()) {
        let listed = world.removal.clone().unwrap_or_default();
        world.removal = Some(listed);
        let Planned { plan, .. } = plan_world(&world);
        let everything = world.removal.as_ref().is_some_and(|entries| entries.iter().any(|e| e == "*"));
        for entry in &plan.entries {
            prop_assert!(!matches!(entry.reason, Reason::Unused | Reason::Referenced | Reason::Recent));
            if everything {
                prop_assert!(entry.reason != Reason::NotListed);
            }
        }
    }

    #[test]
    fn plans_are_deterministic(world in world()) {
        let first = plan_world(&world).plan;
        let second = plan_world(&world).plan;
        prop_assert_eq!(&first, &second);
        let reasons = first.count_by_reason();
        prop_assert_eq!(reasons.values().sum::<usize>(), first.entries.len());
    }
}
