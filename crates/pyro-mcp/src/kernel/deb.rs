//! Unpacking a (verified) kernel `.deb`: the ar container, its `data.tar.xz`, the kernel image
//! and the wanted modules with their dependencies (read from each module's `.modinfo` ELF
//! section), ordered so that every module follows its dependencies.
//!
//! Files are written only under names chosen here (`vmlinuz`, `modules/<name>.ko`); no path
//! from the archive is ever used to create a file, and entries with absolute or `..` paths
//! make the whole package invalid.

use crate::error::{Context, Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

const MAX_VMLINUZ: u64 = 128 << 20;
const MAX_MODULE: u64 = 64 << 20;
const MAX_BUILTIN_LIST: u64 = 4 << 20;

/// Module name as the kernel knows it: `-` and `_` are interchangeable, `_` is canonical.
pub(crate) fn module_name(s: &str) -> String {
    s.replace('-', "_")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Xz,
}

#[derive(Debug, Clone)]
struct Indexed {
    path: String,
    depends: Vec<String>,
    compression: Compression,
}

/// What the first pass over the package learns.
#[derive(Debug, Default)]
struct ModuleIndex {
    modules: BTreeMap<String, Indexed>,
    /// Names from `modules.builtin`; `None` if the package has no such list.
    builtin: Option<BTreeSet<String>>,
    vmlinuz: bool,
}

/// Result of [`unpack_kernel`]: paths relative to the output directory.
#[derive(Debug, Clone)]
pub(crate) struct Unpacked {
    pub vmlinuz: PathBuf,
    /// (module name, relative path), dependencies first.
    pub modules: Vec<(String, PathBuf)>,
}

fn invalid_deb(what: impl std::fmt::Display) -> Error {
    Error::guest(format!("the kernel package is not usable: {what}"))
        .hint("this should not happen with a verified Debian package; delete the kernel cache and retry")
}

/// Extract `boot/vmlinuz-<release>` and the `.ko` files of `wanted` plus their transitive
/// dependencies from `deb` into `out` (`out/vmlinuz`, `out/modules/<name>.ko`, uncompressed),
/// fsyncing each file. Wanted modules that are built into the kernel are skipped.
pub(crate) fn unpack_kernel(deb: &Path, release: &str, wanted: &[&str], out: &Path) -> Result<Unpacked> {
    // Pass 1: index every module's dependencies (the tar order does not put dependencies
    // first, and modules.dep is generated at install time, so it is not in the package).
    let index = with_data_tar(deb, |tar| index_modules(tar, release))?;
    if !index.vmlinuz {
        return Err(invalid_deb(format!("it has no boot/vmlinuz-{release}")));
    }
    let deps: BTreeMap<String, Vec<String>> =
        index.modules.iter().map(|(k, v)| (k.clone(), v.depends.clone())).collect();
    let builtin = |n: &str| match &index.builtin {
        Some(list) => list.contains(n),
        None => true,
    };
    let order = topo_order(wanted, &deps, &builtin).map_err(invalid_deb)?;

    // Pass 2: pull out exactly the chosen files.
    let mod_dir = out.join("modules");
    crate::paths::private_dir(&mod_dir)?;
    let mut targets: HashMap<String, Target> = HashMap::new();
    targets.insert(format!("boot/vmlinuz-{release}"), Target::Kernel(out.join("vmlinuz")));
    let mut modules = Vec::new();
    for name in &order {
        let m = &index.modules[name];
        let rel = PathBuf::from("modules").join(format!("{name}.ko"));
        targets.insert(m.path.clone(), Target::Module(out.join(&rel), m.compression));
        modules.push((name.clone(), rel));
    }
    let want = targets.len();
    let mut done = 0usize;
    with_data_tar(deb, |tar| {
        for_each_file(tar, |path, size, r| {
            let Some(target) = targets.get(path) else {
                return Ok(true);
            };
            match target {
                Target::Kernel(dest) => {
                    let data = read_capped(r, size, MAX_VMLINUZ, path)?;
                    if data.len() < 0x210 || &data[0x202..0x206] != b"HdrS" {
                        return Err(invalid_deb(format!("{path} is not a bzImage")));
                    }
                    write_synced(dest, &data)?;
                }
                Target::Module(dest, compression) => {
                    let data = read_module(r, size, *compression, path)?;
                    let info = modinfo_section(&data).ok_or_else(|| invalid_deb(format!("{path} has no .modinfo")))?;
                    let vermagic = modinfo_get(info, "vermagic").unwrap_or("");
                    if vermagic.split_whitespace().next() != Some(release) {
                        return Err(invalid_deb(format!("{path} was built for {vermagic:?}, not {release}")));
                    }
                    write_synced(dest, &data)?;
                }
            }
            done += 1;
            Ok(done < want)
        })
    })?;
    if done != want {
        return Err(invalid_deb("files seen in the first pass were missing in the second"));
    }
    sync_dir(&mod_dir)?;
    sync_dir(out)?;
    Ok(Unpacked { vmlinuz: PathBuf::from("vmlinuz"), modules })
}

enum Target {
    Kernel(PathBuf),
    Module(PathBuf, Compression),
}

fn write_synced(dest: &Path, data: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| Error::io(format!("writing {}", dest.display()), e))
}

pub(crate) use crate::paths::sync_dir;

/// Open `deb`, check it is a Debian binary package, and run `f` on its decompressed data.tar.
fn with_data_tar<T>(deb: &Path, f: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
    let file = std::fs::File::open(deb).map_err(|e| Error::io(format!("opening {}", deb.display()), e))?;
    let mut ar = ar::Archive::new(BufReader::new(file));
    let mut first = true;
    while let Some(entry) = ar.next_entry() {
        let mut entry = entry.map_err(|e| invalid_deb(format!("bad ar archive: {e}")))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).trim().trim_end_matches('/').to_string();
        if first {
            first = false;
            let mut magic = String::new();
            (&mut entry)
                .take(16)
                .read_to_string(&mut magic)
                .map_err(|e| invalid_deb(format!("bad ar archive: {e}")))?;
            if name != "debian-binary" || !magic.starts_with("2.") {
                return Err(invalid_deb("it is not a Debian 2.x binary package"));
            }
            continue;
        }
        match name.as_str() {
            "data.tar.xz" => return f(&mut xz2::read::XzDecoder::new(entry)),
            "data.tar" => return f(&mut entry),
            n if n.starts_with("data.tar.") => {
                return Err(invalid_deb(format!("its payload {n} uses a compression pyro does not support (only xz)")));
            }
            _ => {}
        }
    }
    Err(invalid_deb("it has no data.tar member"))
}

/// Archive path in canonical form (`lib/modules/...`, no `./`), or an error for absolute or
/// `..` paths. `None` for names that are not UTF-8 (never one we want).
fn normalize(path: &Path) -> Result<Option<String>> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => match p.to_str() {
                Some(s) => parts.push(s),
                None => return Ok(None),
            },
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(invalid_deb(format!("its data.tar has an unsafe path {}", path.display())));
            }
        }
    }
    Ok(Some(parts.join("/")))
}

/// Call `visit(path, size, reader)` for every regular file of the tar stream until it
/// returns `Ok(false)`.
fn for_each_file(tar: &mut dyn Read, mut visit: impl FnMut(&str, u64, &mut dyn Read) -> Result<bool>) -> Result<()> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().ctx("reading the kernel package's data.tar")? {
        let mut entry = entry.ctx("reading the kernel package's data.tar")?;
        let path = entry.path().ctx("reading the kernel package's data.tar")?.into_owned();
        let Some(path) = normalize(&path)? else {
            continue;
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let size = entry.size();
        if !visit(&path, size, &mut entry)? {
            break;
        }
    }
    Ok(())
}

fn read_capped(r: &mut dyn Read, size: u64, cap: u64, path: &str) -> Result<Vec<u8>> {
    if size > cap {
        return Err(invalid_deb(format!("{path} is implausibly large ({size} bytes)")));
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(cap).read_to_end(&mut buf).ctx(format!("reading {path} from the kernel package"))?;
    Ok(buf)
}

fn read_module(r: &mut dyn Read, size: u64, compression: Compression, path: &str) -> Result<Vec<u8>> {
    let raw = read_capped(r, size, MAX_MODULE, path)?;
    match compression {
        Compression::None => Ok(raw),
        Compression::Xz => {
            let mut out = Vec::new();
            xz2::read::XzDecoder::new(&raw[..])
                .take(MAX_MODULE + 1)
                .read_to_end(&mut out)
                .map_err(|e| invalid_deb(format!("cannot decompress {path}: {e}")))?;
            if out.len() as u64 > MAX_MODULE {
                return Err(invalid_deb(format!("{path} is implausibly large")));
            }
            Ok(out)
        }
    }
}

/// `lib/modules/<release>/` or `usr/lib/modules/<release>/` prefix stripped, if present.
fn under_module_dir<'a>(path: &'a str, release: &str) -> Option<&'a str> {
    let rest = path.strip_prefix("usr/").unwrap_or(path);
    rest.strip_prefix("lib/modules/")?.strip_prefix(release)?.strip_prefix('/')
}

fn index_modules(tar: &mut dyn Read, release: &str) -> Result<ModuleIndex> {
    let mut index = ModuleIndex::default();
    let vmlinuz = format!("boot/vmlinuz-{release}");
    for_each_file(tar, |path, size, r| {
        if path == vmlinuz {
            index.vmlinuz = true;
            return Ok(true);
        }
        let Some(rest) = under_module_dir(path, release) else {
            return Ok(true);
        };
        if rest == "modules.builtin" {
            let data = read_capped(r, size, MAX_BUILTIN_LIST, path)?;
            index.builtin = Some(parse_builtin_list(&String::from_utf8_lossy(&data)));
            return Ok(true);
        }
        let file = rest.rsplit('/').next().unwrap_or(rest);
        let (stem, compression) = if let Some(s) = file.strip_suffix(".ko") {
            (s, Compression::None)
        } else if let Some(s) = file.strip_suffix(".ko.xz") {
            (s, Compression::Xz)
        } else if file.ends_with(".ko.zst") || file.ends_with(".ko.gz") {
            return Err(invalid_deb(format!("module {path} uses a compression pyro does not support (only xz)")));
        } else {
            return Ok(true);
        };
        let data = read_module(r, size, compression, path)?;
        let info = modinfo_section(&data).ok_or_else(|| invalid_deb(format!("{path} is not a kernel module")))?;
        let name = module_name(modinfo_get(info, "name").unwrap_or(stem));
        let depends = modinfo_get(info, "depends").map(parse_modinfo_depends).unwrap_or_default();
        if index.modules.contains_key(&name) {
            return Err(invalid_deb(format!("module {name} appears twice")));
        }
        index.modules.insert(name, Indexed { path: path.to_string(), depends, compression });
        Ok(true)
    })?;
    Ok(index)
}

/// Names from a `modules.builtin` list (`kernel/drivers/virtio/virtio.ko` per line).
fn parse_builtin_list(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| l.rsplit('/').next())
        .filter_map(|f| f.strip_suffix(".ko"))
        .filter(|s| !s.is_empty())
        .map(module_name)
        .collect()
}

/// The `depends=` value: comma-separated module names, possibly empty.
pub(crate) fn parse_modinfo_depends(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(module_name).collect()
}

/// First value of `key` in a `.modinfo` section (NUL-separated `key=value` strings).
pub(crate) fn modinfo_get<'a>(section: &'a [u8], key: &str) -> Option<&'a str> {
    section.split(|b| *b == 0).find_map(|entry| {
        let rest = entry.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
        std::str::from_utf8(rest).ok()
    })
}

/// The bytes of the `.modinfo` section of an ELF (32/64-bit, either endianness) file.
pub(crate) fn modinfo_section(elf: &[u8]) -> Option<&[u8]> {
    if elf.len() < 52 || &elf[..4] != b"\x7fELF" {
        return None;
    }
    let is64 = match elf[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let le = match elf[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let rd = |off: usize, len: usize| -> Option<u64> {
        let b = elf.get(off..off.checked_add(len)?)?;
        let mut v: u64 = 0;
        for i in 0..len {
            let byte = if le { b[len - 1 - i] } else { b[i] };
            v = (v << 8) | byte as u64;
        }
        Some(v)
    };
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (rd(0x28, 8)?, rd(0x3A, 2)?, rd(0x3C, 2)?, rd(0x3E, 2)?)
    } else {
        (rd(0x20, 4)?, rd(0x2E, 2)?, rd(0x30, 2)?, rd(0x32, 2)?)
    };
    let min_ent = if is64 { 64 } else { 40 };
    if shentsize < min_ent || shnum == 0 || shstrndx >= shnum {
        return None;
    }
    // (name offset, file offset, size, type) of section i.
    let section = |i: u64| -> Option<(u64, u64, u64, u64)> {
        let base = usize::try_from(shoff.checked_add(i.checked_mul(shentsize)?)?).ok()?;
        if is64 {
            Some((rd(base, 4)?, rd(base + 24, 8)?, rd(base + 32, 8)?, rd(base + 4, 4)?))
        } else {
            Some((rd(base, 4)?, rd(base + 16, 4)?, rd(base + 20, 4)?, rd(base + 4, 4)?))
        }
    };
    let slice = |off: u64, size: u64| -> Option<&[u8]> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        elf.get(start..end)
    };
    let (_, str_off, str_size, _) = section(shstrndx)?;
    let strtab = slice(str_off, str_size)?;
    for i in 0..shnum {
        let (name_off, off, size, kind) = section(i)?;
        const SHT_NOBITS: u64 = 8;
        if kind == SHT_NOBITS {
            continue;
        }
        let name = strtab.get(usize::try_from(name_off).ok()?..)?;
        let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
        if name == b".modinfo" {
            return slice(off, size);
        }
    }
    None
}

/// Order `wanted` and their transitive dependencies so that each module follows everything it
/// depends on. `deps` maps each module present in the package to its `depends=` list; a name
/// that is not there is skipped when `builtin` says it is built into the kernel, and is an
/// error otherwise. Order is deterministic: wanted order, then `depends=` order, depth-first.
pub(crate) fn topo_order(
    wanted: &[&str],
    deps: &BTreeMap<String, Vec<String>>,
    builtin: &dyn Fn(&str) -> bool,
) -> std::result::Result<Vec<String>, String> {
    #[derive(PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        deps: &BTreeMap<String, Vec<String>>,
        builtin: &dyn Fn(&str) -> bool,
        marks: &mut HashMap<String, Mark>,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> std::result::Result<(), String> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                return Err(format!("module dependency cycle: {} -> {name}", stack.join(" -> ")));
            }
            None => {}
        }
        let Some(ds) = deps.get(name) else {
            if builtin(name) {
                marks.insert(name.to_string(), Mark::Done);
                return Ok(());
            }
            let by = stack.last().map(|p| format!(" (needed by {p})")).unwrap_or_default();
            return Err(format!("module {name}{by} is neither in the package nor built into the kernel"));
        };
        marks.insert(name.to_string(), Mark::Visiting);
        stack.push(name.to_string());
        for d in ds {
            visit(&module_name(d), deps, builtin, marks, stack, out)?;
        }
        stack.pop();
        marks.insert(name.to_string(), Mark::Done);
        out.push(name.to_string());
        Ok(())
    }
    let mut marks = HashMap::new();
    let mut out = Vec::new();
    for w in wanted {
        visit(&module_name(w), deps, builtin, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal little-endian ELF64 relocatable with sections: null, .modinfo, .shstrtab.
    fn fake_elf64(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little-endian
        f[6] = 1;
        let modinfo_off = f.len() as u64;
        f.extend_from_slice(modinfo);
        let strtab_off = f.len() as u64;
        f.extend_from_slice(shstrtab);
        f.resize(f.len().div_ceil(8) * 8, 0);
        let shoff = f.len() as u64;
        let mut sh = |name: u32, kind: u32, off: u64, size: u64| {
            let mut e = vec![0u8; 64];
            e[0..4].copy_from_slice(&name.to_le_bytes());
            e[4..8].copy_from_slice(&kind.to_le_bytes());
            e[24..32].copy_from_slice(&off.to_le_bytes());
            e[32..40].copy_from_slice(&size.to_le_bytes());
            f.extend_from_slice(&e);
        };
        sh(0, 0, 0, 0);
        sh(1, 1, modinfo_off, modinfo.len() as u64);
        sh(10, 3, strtab_off, shstrtab.len() as u64);
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        f[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        f[0x3E..0x40].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    const MODINFO: &[u8] = b"alias=virtio:d00000003v*\0description=Virtio network driver\0license=GPL\0\
depends=virtio_ring,virtio,net-failover\0retpoline=Y\0intree=Y\0name=virtio_net\0\
vermagic=6.1.0-50-cloud-amd64 SMP preempt mod_unload modversions \0";

    #[test]
    fn modinfo_from_section_bytes() {
        assert_eq!(modinfo_get(MODINFO, "name"), Some("virtio_net"));
        assert_eq!(modinfo_get(MODINFO, "vermagic").unwrap().split_whitespace().next(), Some("6.1.0-50-cloud-amd64"));
        let deps = parse_modinfo_depends(modinfo_get(MODINFO, "depends").unwrap());
        assert_eq!(deps, vec!["virtio_ring", "virtio", "net_failover"]);
        assert_eq!(parse_modinfo_depends(""), Vec::<String>::new());
        assert_eq!(modinfo_get(b"xdepends=a\0", "depends"), None);
        assert_eq!(modinfo_get(b"name=virtio\0depends=\0", "depends"), Some(""));
    }

    #[test]
    fn modinfo_from_elf() {
        let elf = fake_elf64(MODINFO);
        assert_eq!(modinfo_section(&elf), Some(MODINFO));
        assert_eq!(modinfo_section(b"not an elf file at all, definitely not one, nope......"), None);
        // Truncated section headers must not panic.
        for cut in [10, 64, 100, elf.len() - 1] {
            let _ = modinfo_section(&elf[..cut]);
        }
        // Garbage offsets must not panic either.
        let mut bad = elf.clone();
        bad[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(modinfo_section(&bad), None);
    }

    #[test]
    fn modinfo_from_real_module_if_present() {
        // Best effort against a module of the build host, when one is readable uncompressed.
        let Ok(rel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
            return;
        };
        let p = format!("/lib/modules/{}/kernel/drivers/block/virtio_blk.ko", rel.trim());
        if let Ok(data) = std::fs::read(p) {
            let s = modinfo_section(&data).expect("modinfo");
            assert!(modinfo_get(s, "depends").is_some());
        }
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn topological_order() {
        let g = graph(&[
            ("virtio_blk", &["virtio", "virtio_ring"]),
            ("virtio_console", &["virtio", "virtio_ring"]),
            ("virtio_net", &["virtio_ring", "virtio", "net_failover"]),
            ("net_failover", &["failover"]),
            ("failover", &[]),
            ("virtio_mmio", &["virtio", "virtio_ring"]),
            ("virtio", &[]),
            ("virtio_ring", &[]),
        ]);
        let wanted = ["virtio_blk", "virtio_console", "virtio_net", "virtio_mmio"];
        let order = topo_order(&wanted, &g, &|_| false).unwrap();
        assert_eq!(
            order,
            [
                "virtio",
                "virtio_ring",
                "virtio_blk",
                "virtio_console",
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_mmio"
            ]
        );
        // Every module comes after its dependencies.
        for (i, m) in order.iter().enumerate() {
            for d in &g[m] {
                assert!(order[..i].contains(d), "{d} must precede {m}");
            }
        }
    }

    #[test]
    fn topological_order_builtin_missing_and_cycles() {
        let g = graph(&[("a", &["b", "c-d"]), ("c_d", &[]), ("x", &["y"]), ("y", &["x"])]);
        // b is built in: skipped silently; `c-d` and `c_d` are the same module.
        assert_eq!(topo_order(&["a"], &g, &|n| n == "b").unwrap(), ["c_d", "a"]);
        // A wanted module that is built in is skipped too.
        assert_eq!(topo_order(&["b", "c_d"], &g, &|n| n == "b").unwrap(), ["c_d"]);
        let e = topo_order(&["a"], &g, &|_| false).unwrap_err();
        assert!(e.contains("module b (needed by a)"), "{e}");
        assert!(topo_order(&["x"], &g, &|_| false).unwrap_err().contains("cycle"));
    }

    #[test]
    fn builtin_list() {
        let s =
            parse_builtin_list("kernel/drivers/virtio/virtio_anchor.ko\nkernel/fs/ext4/ext4.ko\n\nkernel/x/a-b.ko\n");
        assert!(s.contains("virtio_anchor") && s.contains("ext4") && s.contains("a_b"));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn path_normalization() {
        assert_eq!(normalize(Path::new("./lib/modules/x/a.ko")).unwrap().unwrap(), "lib/modules/x/a.ko");
        assert!(normalize(Path::new("/etc/passwd")).is_err());
        assert!(normalize(Path::new("./lib/../../etc")).is_err());
        assert_eq!(under_module_dir("lib/modules/6.1/kernel/a.ko", "6.1"), Some("kernel/a.ko"));
        assert_eq!(under_module_dir("usr/lib/modules/6.1/modules.builtin", "6.1"), Some("modules.builtin"));
        assert_eq!(under_module_dir("lib/modules/6.10/kernel/a.ko", "6.1"), None);
    }

    fn build_deb(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut b = ar::Builder::new(&mut out);
            for (name, data) in members {
                b.append(&ar::Header::new(name.as_bytes().to_vec(), data.len() as u64), &data[..]).unwrap();
            }
        }
        out
    }

    fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`; write the raw name so hostile archives can be simulated.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        xz2::read::XzEncoder::new(data, 1).read_to_end(&mut out).unwrap();
        out
    }

    fn test_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pyro-deb-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn unpack_synthetic_package() {
        let rel = "6.1.0-9-cloud-amd64";
        let module = |name: &str, deps: &str| {
            fake_elf64(format!("depends={deps}\0name={name}\0vermagic={rel} SMP mod_unload \0").as_bytes())
        };
        let mut kernel = vec![0u8; 0x400];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        let (a, b, c, unrelated) = (module("a", "b"), module("b", ""), module("c", "b"), module("z", ""));
        let c_xz = xz(&c);
        let data = tar_with(&[
            ("./boot/vmlinuz-6.1.0-9-cloud-amd64", &kernel),
            ("./lib/modules/6.1.0-9-cloud-amd64/kernel/a.ko", &a),
            ("./lib/modules/6.1.0-9-cloud-amd64/kernel/c.ko.xz", &c_xz),
            ("./lib/modules/6.1.0-9-cloud-amd64/kernel/z.ko", &unrelated),
            ("./lib/modules/6.1.0-9-cloud-amd64/kernel/sub/b.ko", &b),
            ("./lib/modules/6.1.0-9-cloud-amd64/modules.builtin", b"kernel/drivers/q.ko\n"),
        ]);
        let dir = test_dir("ok");
        let deb = dir.join("k.deb");
        std::fs::write(&deb, build_deb(&[("debian-binary", b"2.0\n".to_vec()), ("data.tar.xz", xz(&data))])).unwrap();
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let u = unpack_kernel(&deb, rel, &["a", "q", "c"], &out).unwrap();
        let names: Vec<&str> = u.modules.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(std::fs::read(out.join("vmlinuz")).unwrap(), kernel);
        assert_eq!(std::fs::read(out.join("modules/c.ko")).unwrap(), c, "xz module stored uncompressed");
        assert!(!out.join("modules/z.ko").exists());
        // Not built in and not present: error.
        assert!(unpack_kernel(&deb, rel, &["nope"], &out).is_err());

        // Hostile path anywhere in the archive rejects the package.
        let evil = tar_with(&[("./boot/vmlinuz-6.1.0-9-cloud-amd64", &kernel), ("../../etc/evil", b"x")]);
        std::fs::write(&deb, build_deb(&[("debian-binary", b"2.0\n".to_vec()), ("data.tar.xz", xz(&evil))])).unwrap();
        assert!(unpack_kernel(&deb, rel, &["a"], &out).is_err());

        // Unsupported payload compression gives a clear error.
        std::fs::write(&deb, build_deb(&[("debian-binary", b"2.0\n".to_vec()), ("data.tar.zst", vec![1, 2, 3])]))
            .unwrap();
        let e = unpack_kernel(&deb, rel, &["a"], &out).unwrap_err();
        assert!(e.message.contains("data.tar.zst"), "{}", e.message);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
