//! Finding, loading and checking plugin libraries: the search path (plugins load by plain
//! name from it, never from a path a script names), the handshake (ABI version first, then SDK, tch, libtorch and rustc versions), the
//! file hash, and a process-wide cache. Libraries are never unloaded: they are
//! leaked on load, so descriptors, vtables and instances stay valid for the process.
use anyhow::{bail, Context, Result};
use dctk_plugin_sdk::abi::{self, DescriptorFn, PluginDescriptor};
use dctk_plugin_sdk::settings::Setting;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// A loaded, checked plugin library.
pub struct Plugin {
    pub name: String,
    pub version: String,
    pub description: String,
    /// The library file (canonical path).
    pub file: PathBuf,
    /// blake3 of the library file, hex.
    pub blake3: String,
    pub kinds: u32,
    pub(crate) desc: &'static PluginDescriptor,
}

// The descriptor is immutable static data of a library that is never unloaded.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("name", &self.name).field("version", &self.version).field("file", &self.file).finish()
    }
}

impl Plugin {
    /// Kind names, e.g. `["regularizer"]`.
    pub fn kind_names(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        if self.kinds & abi::KIND_REGULARIZER != 0 {
            k.push("regularizer");
        }
        if self.kinds & abi::KIND_AUGMENTER != 0 {
            k.push("augmenter");
        }
        if self.kinds & abi::KIND_LAW != 0 {
            k.push("law");
        }
        k
    }

    pub fn regularizer(&self) -> Option<&'static abi::RegularizerVTable> {
        unsafe { self.desc.regularizer.as_ref() }
    }

    pub fn augmenter(&self) -> Option<&'static abi::AugmenterVTable> {
        unsafe { self.desc.augmenter.as_ref() }
    }

    pub fn law(&self) -> Option<&'static abi::LawVTable> {
        unsafe { self.desc.law.as_ref() }
    }

    /// Settings of one kind's vtable (regularizer or augmenter).
    pub fn settings(&self, kind: &str) -> Result<Vec<Setting>> {
        let descs = match kind {
            "regularizer" => self.regularizer().map(|v| v.settings),
            "augmenter" => self.augmenter().map(|v| v.settings),
            _ => None,
        };
        let Some(descs) = descs else { return Ok(Vec::new()) };
        unsafe { descs.as_slice() }
            .iter()
            .map(|d| unsafe { Setting::from_desc(d) })
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(|e| anyhow::anyhow!("plugin `{}` ({}): {e}", self.name, self.file.display()))
    }

    /// Check that the plugin has `kind` (error names the plugin, file and its kinds).
    pub fn require(&self, kind: &str) -> Result<()> {
        if !self.kind_names().contains(&kind) {
            bail!("plugin `{}` ({}) is not a {kind}: it provides {}", self.name, self.file.display(), self.kind_names().join(", "));
        }
        Ok(())
    }
}

/// The directories searched, highest precedence first: each entry of
/// `DCTK_PLUGIN_PATH` (`:`-separated), the user directory (`$DCTK_HOME/plugins`,
/// else `~/.dctk/plugins`), then the project's built plugins (the directory of the
/// running `dctk`, e.g. `target/release/`, where cargo puts workspace `cdylib`s).
pub fn search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = std::env::var_os("DCTK_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&p).filter(|d| !d.as_os_str().is_empty()));
    }
    if let Some(d) = user_dir() {
        dirs.push(d);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
            // Test executables live in target/<profile>/deps/.
            if dir.file_name().is_some_and(|n| n == "deps") {
                if let Some(up) = dir.parent() {
                    dirs.push(up.to_path_buf());
                }
            }
        }
    }
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let k = d.canonicalize().unwrap_or_else(|_| d.clone());
        let new = !seen.contains(&k);
        seen.push(k);
        new
    });
    dirs
}

/// The user plugin directory: `$DCTK_HOME/plugins`, else `~/.dctk/plugins`.
pub fn user_dir() -> Option<PathBuf> {
    super::source::dctk_home().map(|h| h.join("plugins"))
}

/// Does `file` look like a plugin library (`libdctk_plugin_*.so|.dylib`, `dctk_plugin_*.dll`)?
pub fn is_plugin_file(file: &Path) -> bool {
    let Some(name) = file.file_name().and_then(|n| n.to_str()) else { return false };
    let stem = name.strip_prefix("lib").unwrap_or(name);
    stem.starts_with("dctk_plugin_") && [".so", ".dylib", ".dll"].iter().any(|e| stem.ends_with(e))
}

/// Plugin library files in the search path, in precedence order.
pub fn candidate_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in search_path() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut here: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_plugin_file(p)).collect();
        here.sort();
        files.extend(here);
    }
    files
}

/// What discovery found: plugins by name (first in precedence wins), shadowed
/// duplicates, and files that failed to load with their errors.
#[derive(Default)]
pub struct Discovery {
    pub plugins: Vec<Arc<Plugin>>,
    pub shadowed: Vec<Arc<Plugin>>,
    pub errors: Vec<(PathBuf, String)>,
}

impl Discovery {
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.iter().find(|p| p.name == name)
    }
}

/// Load every candidate file. Never fails: bad files become `errors`.
pub fn discover() -> Discovery {
    let mut d = Discovery::default();
    for f in candidate_files() {
        match load(&f) {
            Ok(p) => {
                if d.plugins.iter().any(|q| q.name == p.name) {
                    d.shadowed.push(p);
                } else {
                    d.plugins.push(p);
                }
            }
            Err(e) => d.errors.push((f, format!("{e:#}"))),
        }
    }
    d
}

/// Is `name` a plain plugin name (`[a-z0-9_-]+`)? Anything else (a path, a file name) is
/// refused: plugins load only from the search path, never from a path a script or spec names.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
        bail!(
            "\"{name}\" is not a plugin name (plain [a-z0-9_-]+): plugins load by name from the plugin search path ({}), \
             never from a path; to use a library, put it in one of those directories (or in DCTK_PLUGIN_PATH)",
            search_path().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Libraries named explicitly on dctk's command line (`dctk plugins info|check FILE`), by
/// plugin name: declared for this process only, and found before the search path.
fn declared() -> &'static Mutex<Vec<Arc<Plugin>>> {
    static D: OnceLock<Mutex<Vec<Arc<Plugin>>>> = OnceLock::new();
    D.get_or_init(Default::default)
}

/// Loads the library `file` that the user named on the command line and makes it the plugin
/// of its name for this process (a root declared by the user, as `DCTK_PLUGIN_PATH` is; no
/// script or spec can reach this).
pub fn declare(file: &Path) -> Result<Arc<Plugin>> {
    let p = load(file)?;
    let mut d = declared().lock().unwrap_or_else(|p| p.into_inner());
    d.retain(|q| q.name != p.name);
    d.push(p.clone());
    Ok(p)
}

/// The plugin called `name` (a plain name, see [`check_name`]): a [`declare`]d one, else the
/// first on the search path. Errors list what is available.
pub fn find(name: &str) -> Result<Arc<Plugin>> {
    check_name(name)?;
    if let Some(p) = declared().lock().unwrap_or_else(|p| p.into_inner()).iter().find(|p| p.name == name) {
        return Ok(p.clone());
    }
    let d = discover();
    if let Some(p) = d.get(name) {
        return Ok(p.clone());
    }
    // A file named after the plugin that failed to load explains itself.
    if let Some((f, e)) =
        d.errors.iter().find(|(f, _)| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(&format!("dctk_plugin_{name}."))))
    {
        bail!("plugin `{name}` ({}) did not load: {e}", f.display());
    }
    let names: Vec<&str> = d.plugins.iter().map(|p| p.name.as_str()).collect();
    bail!(
        "no plugin named `{name}` (found: {}); searched {}",
        if names.is_empty() { "none".into() } else { names.join(", ") },
        search_path().iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}

type Cache = Mutex<HashMap<PathBuf, std::result::Result<Arc<Plugin>, String>>>;

fn cache() -> &'static Cache {
    static C: OnceLock<Cache> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// Load and check one library (cached per canonical path and content hash).
pub fn load(file: &Path) -> Result<Arc<Plugin>> {
    let file = file.canonicalize().with_context(|| format!("plugin file {}", file.display()))?;
    let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = c.get(&file) {
        return r.clone().map_err(anyhow::Error::msg);
    }
    let r = load_uncached(&file).map(Arc::new).map_err(|e| format!("{e:#}"));
    c.insert(file, r.clone());
    r.map_err(anyhow::Error::msg)
}

fn load_uncached(file: &Path) -> Result<Plugin> {
    let bytes = std::fs::read(file).with_context(|| format!("reading plugin file {}", file.display()))?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    // SAFETY: loading runs the library's initialisers; plugin files are code the
    // user chose to put on the search path, like any executable.
    let lib = unsafe { libloading::Library::new(file) }.map_err(|e| anyhow::anyhow!("{}: cannot load the library: {e}", file.display()))?;
    let lib: &'static libloading::Library = Box::leak(Box::new(lib)); // never unloaded
    let sym = abi::DESCRIPTOR_SYMBOL;
    let entry: DescriptorFn = unsafe {
        *lib.get::<DescriptorFn>(format!("{sym}\0").as_bytes()).map_err(|_| {
            anyhow::anyhow!(
                "{}: missing symbol `{sym}`: not a dctk plugin (a plugin exports it with \
                 dctk_plugin_sdk::export_plugin!)",
                file.display()
            )
        })?
    };
    let ptr = unsafe { entry() };
    if ptr.is_null() {
        bail!("{}: `{sym}` returned null (building the descriptor panicked inside the plugin)", file.display());
    }
    // Handshake, step 1: the two leading u32s, whose place never changes.
    let (abi_version, size) = unsafe { (*(ptr as *const u32), *(ptr as *const u32).add(1)) };
    if abi_version != abi::ABI_VERSION {
        bail!(
            "{}: plugin ABI version {abi_version}, but this dctk speaks ABI version {}: rebuild the plugin against \
             dctk-plugin-sdk {} (the `plugins/sdk` of this dctk)",
            file.display(),
            abi::ABI_VERSION,
            dctk_plugin_sdk::SDK_VERSION
        );
    }
    let want = std::mem::size_of::<PluginDescriptor>() as u32;
    if size != want {
        bail!(
            "{}: descriptor is {size} bytes, this dctk expects {want} for ABI version {}: rebuild the plugin against \
             dctk-plugin-sdk {}",
            file.display(),
            abi::ABI_VERSION,
            dctk_plugin_sdk::SDK_VERSION
        );
    }
    let desc: &'static PluginDescriptor = unsafe { &*ptr };
    let name = unsafe { desc.name.to_string_lossy() };
    // Handshake, step 2: exact build versions.
    let host = unsafe { BuildVersions::read(&dctk_plugin_sdk::build_info()) };
    let theirs = unsafe { BuildVersions::read(&desc.build) };
    compare_builds(&host, &theirs).map_err(|e| anyhow::anyhow!("{}: plugin `{name}` {e}", file.display()))?;
    let kinds = desc.kinds;
    let missing = [
        (abi::KIND_REGULARIZER, desc.regularizer.is_null(), "regularizer"),
        (abi::KIND_AUGMENTER, desc.augmenter.is_null(), "augmenter"),
        (abi::KIND_LAW, desc.law.is_null(), "law"),
    ];
    for (bit, null, kind) in missing {
        if (kinds & bit != 0) == null {
            bail!("{}: plugin `{name}`: kind bits and {kind} vtable disagree", file.display());
        }
    }
    if kinds == 0 {
        bail!("{}: plugin `{name}` declares no kind", file.display());
    }
    Ok(Plugin {
        name,
        version: unsafe { desc.version.to_string_lossy() },
        description: unsafe { desc.description.to_string_lossy() },
        file: file.to_path_buf(),
        blake3: hash,
        kinds,
        desc,
    })
}

/// The versions the handshake compares, as owned strings.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildVersions {
    pub sdk: String,
    pub tch: String,
    pub libtorch: String,
    pub rustc: String,
}

impl BuildVersions {
    /// # Safety
    /// The strings of `b` must be valid (the host's own, or a loaded descriptor's).
    pub unsafe fn read(b: &abi::BuildInfo) -> BuildVersions {
        BuildVersions {
            sdk: b.sdk.to_string_lossy(),
            tch: b.tch.to_string_lossy(),
            libtorch: b.libtorch.to_string_lossy(),
            rustc: b.rustc.to_string_lossy(),
        }
    }
}

/// Every field must be equal. The error names the first differing field, both
/// values and what to rebuild.
pub fn compare_builds(host: &BuildVersions, plugin: &BuildVersions) -> std::result::Result<(), String> {
    let fields = [
        ("dctk-plugin-sdk version", &host.sdk, &plugin.sdk, "rebuild the plugin against this dctk's plugins/sdk".to_string()),
        ("tch version", &host.tch, &plugin.tch, format!("rebuild the plugin with tch ={} (depend on this dctk's plugins/sdk)", host.tch)),
        (
            "libtorch version",
            &host.libtorch,
            &plugin.libtorch,
            format!("rebuild the plugin with LIBTORCH pointing at libtorch {} (the one dctk was built with)", host.libtorch),
        ),
        ("rustc version", &host.rustc, &plugin.rustc, "rebuild the plugin (or dctk) so both use the same toolchain".to_string()),
    ];
    for (field, h, p, fix) in fields {
        if h != p {
            return Err(format!("was built with {field} `{p}`, this dctk with `{h}`: {fix}"));
        }
    }
    Ok(())
}
