//! The project's own pins.yaml: it loads through the library and holds exactly the reference
//! facts of the production stack.

use std::path::Path;

use pinstack::pins::{BundleSource, PatchRef, Pins, Repo};

use crate::harness::Fixture;

fn project_pins() -> Pins {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pins.yaml");
    Pins::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn in_lab(patch: &PatchRef, file: &str) {
    assert_eq!(
        patch.source,
        BundleSource::InRepo {
            repo: "lab".to_owned(),
            path: format!("repro/minimax-m27-b70-89tps-20260520/patches/{file}"),
        }
    );
}

fn no_patches(repo: &Repo) {
    assert!(repo.patches.is_empty(), "{}: {:?}", repo.name, repo.patches);
}

#[test]
fn the_project_pins_hold_the_reference_facts() {
    let pins = project_pins();
    let names: Vec<&str> = pins.repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vllm",
            "llm-scaler",
            "vllm-xpu-kernels",
            "sycl-tla",
            "lab",
            "lab-hardened"
        ]
    );
    for repo in &pins.repos {
        assert_eq!(
            repo.dir, repo.name,
            "checkouts go to <workspace>/src/<name>"
        );
    }

    let vllm = pins.repo("vllm").unwrap();
    assert_eq!(vllm.url, "https://github.com/vllm-project/vllm.git");
    assert_eq!(vllm.commit, "c51df43005726a09c6eb7348e8c1b00501c70a8e");
    assert!(!vllm.submodules);
    assert_eq!(vllm.patches.len(), 1);
    let p = &vllm.patches[0];
    in_lab(
        p,
        "vllm-active-promoted-minimax-89tps-20260520.patch.gz.b64",
    );
    assert_eq!(
        p.sha256,
        "b08981c4b474bb018e4754ad541250396dba9c169cc62436ff5cb31c45211d9b"
    );
    assert_eq!(
        p.diff_sha256,
        "9bc955c852edc91d790e3c5d3d92c907d1387664eac2f99af89ae6ce365bbc69"
    );
    assert_eq!(p.base_dir, None);

    let scaler = pins.repo("llm-scaler").unwrap();
    assert_eq!(scaler.url, "https://github.com/intel/llm-scaler.git");
    assert_eq!(scaler.commit, "4bfc0070090cc54afdb2d46b8e57882359141568");
    assert!(!scaler.submodules);
    assert_eq!(scaler.patches.len(), 1);
    let p = &scaler.patches[0];
    in_lab(
        p,
        "llm-scaler-active-promoted-minimax-89tps-20260520.patch.gz.b64",
    );
    assert_eq!(
        p.sha256,
        "18f315a87cacabfa8149123c1acab0bcf8f3c7bf24e692e2cc8ca97b45a26506"
    );
    assert_eq!(
        p.diff_sha256,
        "5d5ebe3555bab1542c83e131cbc5213afea2c126a39850c9007b6b671b5c982d"
    );
    assert_eq!(
        p.base_dir.as_deref(),
        Some("vllm/custom-esimd-kernels-vllm")
    );

    let kernels = pins.repo("vllm-xpu-kernels").unwrap();
    assert_eq!(
        kernels.url,
        "https://github.com/vllm-project/vllm-xpu-kernels.git"
    );
    assert_eq!(kernels.commit, "28e1f5e74c15744b69cf3b760f6160ceabd15de0");
    assert!(kernels.submodules);
    no_patches(kernels);

    let tla = pins.repo("sycl-tla").unwrap();
    assert_eq!(tla.url, "https://github.com/intel/sycl-tla.git");
    assert_eq!(tla.commit, "cd763790ad2f74d7294435ecf77682bac0062c3a");
    assert!(!tla.submodules);
    no_patches(tla);

    let lab = pins.repo("lab").unwrap();
    assert_eq!(
        lab.url,
        "https://github.com/steveseguin/b70-optimization-lab.git"
    );
    assert_eq!(lab.commit, "510e00ed17fb15b2f7afcb2a1d17beca38a48561");
    assert!(!lab.submodules);
    no_patches(lab);

    let hardened = pins.repo("lab-hardened").unwrap();
    assert_eq!(
        hardened.url,
        "https://github.com/bosd/b70-optimization-lab.git"
    );
    assert_eq!(hardened.commit, "54de4d95cf36143b58acad9d0d89eaf7821d8a5c");
    no_patches(hardened);
}

#[test]
fn the_binary_reads_the_project_pins_without_a_network() {
    // No checkout exists in the fixture: every repo is reported missing, nothing is fetched.
    let fx = Fixture::new();
    let pins = Path::new(env!("CARGO_MANIFEST_DIR")).join("pins.yaml");
    let v = fx.json(&["--pins", &pins.display().to_string(), "audit"], 1);
    let repos = v["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 6, "{v:#}");
    for r in repos {
        assert_eq!(r["head_state"], "missing", "{r:#}");
        assert_eq!(r["clean_as_pinned"], false);
    }
    assert_eq!(
        repos[0]["pinned_commit"],
        "c51df43005726a09c6eb7348e8c1b00501c70a8e"
    );
}
