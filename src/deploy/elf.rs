//! Which machines a binary runs on, read from its ELF header, and whether a
//! host (`uname -sm`) is one of them; and the parts of an ELF file that say
//! which C library it needs (its loader, its glibc symbol versions), read
//! with every offset checked, for [`super::libc`].

/// The machine an ELF executable was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfTarget {
    /// `e_machine` from the header.
    pub machine: u16,
    pub bits: u8,
    pub little_endian: bool,
}

/// Why a file is not an executable we can deploy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF executable (Linux agents are ELF binaries)")]
    NotElf,
    #[error("truncated ELF header")]
    Truncated,
    #[error("malformed ELF file: {0}")]
    Malformed(&'static str),
}

const EM_386: u16 = 3;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

impl ElfTarget {
    /// Reads the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ElfError> {
        if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        let header = bytes.get(..20).ok_or(ElfError::Truncated)?;
        let bits = match header[4] {
            1 => 32,
            2 => 64,
            _ => return Err(ElfError::NotElf),
        };
        let little_endian = match header[5] {
            1 => true,
            2 => false,
            _ => return Err(ElfError::NotElf),
        };
        let raw = [header[18], header[19]];
        let machine = if little_endian {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        };
        Ok(Self {
            machine,
            bits,
            little_endian,
        })
    }

    /// The `uname -m` name of this machine, for messages.
    #[must_use]
    pub fn arch_name(&self) -> String {
        let name = match (self.machine, self.bits, self.little_endian) {
            (EM_X86_64, 64, _) => "x86_64",
            (EM_AARCH64, 64, true) => "aarch64",
            (EM_386, 32, _) => "i686",
            (EM_ARM, 32, true) => "armv7l",
            (EM_RISCV, 64, _) => "riscv64",
            (EM_PPC64, 64, true) => "ppc64le",
            (EM_PPC64, 64, false) => "ppc64",
            (EM_S390, 64, _) => "s390x",
            _ => return format!("ELF machine {}", self.machine),
        };
        name.to_string()
    }

    /// The `uname -m` names (as `sh` case patterns) of machines that run
    /// this binary.
    #[must_use]
    pub fn uname_patterns(&self) -> &'static [&'static str] {
        match (self.machine, self.bits, self.little_endian) {
            (EM_X86_64, 64, true) => &["x86_64", "amd64"],
            (EM_AARCH64, 64, true) => &["aarch64", "arm64"],
            (EM_386, 32, true) => &["i386", "i486", "i586", "i686"],
            (EM_ARM, 32, true) => &["armv*"],
            (EM_RISCV, 64, true) => &["riscv64"],
            (EM_PPC64, 64, true) => &["ppc64le"],
            (EM_PPC64, 64, false) => &["ppc64"],
            (EM_S390, 64, false) => &["s390x"],
            _ => &[],
        }
    }

    /// Whether a host whose `uname -m` says `arch` runs this binary.
    #[must_use]
    pub fn runs_on(&self, arch: &str) -> bool {
        let wanted = match arch {
            "x86_64" | "amd64" => (EM_X86_64, 64, true),
            "aarch64" | "arm64" => (EM_AARCH64, 64, true),
            "i386" | "i486" | "i586" | "i686" => (EM_386, 32, true),
            a if a.starts_with("armv") => (EM_ARM, 32, true),
            "riscv64" => (EM_RISCV, 64, true),
            "ppc64le" => (EM_PPC64, 64, true),
            "ppc64" => (EM_PPC64, 64, false),
            "s390x" => (EM_S390, 64, false),
            _ => return false,
        };
        (self.machine, self.bits, self.little_endian) == wanted
    }
}

/// An ELF file's program and section headers, for reading what it needs
/// at run time. Every read is bounds-checked: a damaged file is an error,
/// never a panic.
pub struct ElfFile<'a> {
    bytes: &'a [u8],
    bits64: bool,
    little_endian: bool,
}

const PT_INTERP: u32 = 3;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

/// One section header: the fields used here.
struct Section {
    kind: u32,
    offset: usize,
    size: usize,
    link: u32,
    info: u32,
}

impl<'a> ElfFile<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        let target = ElfTarget::parse(bytes)?;
        let file = Self {
            bytes,
            bits64: target.bits == 64,
            little_endian: target.little_endian,
        };
        // The header itself: 52 bytes (32-bit) or 64.
        file.slice(0, if file.bits64 { 64 } else { 52 })
            .ok_or(ElfError::Truncated)?;
        Ok(file)
    }

    fn slice(&self, offset: usize, len: usize) -> Option<&'a [u8]> {
        self.bytes.get(offset..offset.checked_add(len)?)
    }

    fn u16_at(&self, offset: usize) -> Result<u16, ElfError> {
        let b = self.slice(offset, 2).ok_or(ElfError::Truncated)?;
        let raw = [b[0], b[1]];
        Ok(if self.little_endian {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        })
    }

    fn u32_at(&self, offset: usize) -> Result<u32, ElfError> {
        let b = self.slice(offset, 4).ok_or(ElfError::Truncated)?;
        let raw = [b[0], b[1], b[2], b[3]];
        Ok(if self.little_endian {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        })
    }

    /// A word: 4 bytes in a 32-bit file, 8 in a 64-bit one, as a usize.
    fn word_at(&self, offset: usize) -> Result<usize, ElfError> {
        let value = if self.bits64 {
            let b = self.slice(offset, 8).ok_or(ElfError::Truncated)?;
            let raw = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
            if self.little_endian {
                u64::from_le_bytes(raw)
            } else {
                u64::from_be_bytes(raw)
            }
        } else {
            u64::from(self.u32_at(offset)?)
        };
        usize::try_from(value)
            .map_err(|_| ElfError::Malformed("an offset beyond this machine's reach"))
    }

    /// `(offset, entry size, count)` of the program (`program`) or section headers.
    fn table(&self, program: bool) -> Result<(usize, usize, usize), ElfError> {
        let (off, entsize, num) = match (self.bits64, program) {
            (true, true) => (0x20, 0x36, 0x38),
            (true, false) => (0x28, 0x3a, 0x3c),
            (false, true) => (0x1c, 0x2a, 0x2c),
            (false, false) => (0x20, 0x2e, 0x30),
        };
        Ok((
            self.word_at(off)?,
            usize::from(self.u16_at(entsize)?),
            usize::from(self.u16_at(num)?),
        ))
    }

    /// The loader a dynamically linked file names (`PT_INTERP`); `None`
    /// for a static one.
    pub fn interpreter(&self) -> Result<Option<String>, ElfError> {
        let (phoff, phentsize, phnum) = self.table(true)?;
        for i in 0..phnum {
            let header = phoff
                .checked_add(i.checked_mul(phentsize).ok_or(ElfError::Truncated)?)
                .ok_or(ElfError::Truncated)?;
            if self.u32_at(header)? != PT_INTERP {
                continue;
            }
            let (offset, size) = if self.bits64 {
                (
                    self.word_at(header.saturating_add(8))?,
                    self.word_at(header.saturating_add(32))?,
                )
            } else {
                (
                    self.word_at(header.saturating_add(4))?,
                    self.word_at(header.saturating_add(16))?,
                )
            };
            let raw = self
                .slice(offset, size)
                .ok_or(ElfError::Malformed("PT_INTERP beyond the end of the file"))?;
            let path = raw.split(|&b| b == 0).next().unwrap_or_default();
            return Ok(Some(String::from_utf8_lossy(path).into_owned()));
        }
        Ok(None)
    }

    fn section(&self, index: usize) -> Result<Section, ElfError> {
        let (shoff, shentsize, shnum) = self.table(false)?;
        if index >= shnum {
            return Err(ElfError::Malformed(
                "a section index beyond the section table",
            ));
        }
        let at = shoff
            .checked_add(index.checked_mul(shentsize).ok_or(ElfError::Truncated)?)
            .ok_or(ElfError::Truncated)?;
        let kind = self.u32_at(at.saturating_add(4))?;
        Ok(if self.bits64 {
            Section {
                kind,
                offset: self.word_at(at.saturating_add(0x18))?,
                size: self.word_at(at.saturating_add(0x20))?,
                link: self.u32_at(at.saturating_add(0x28))?,
                info: self.u32_at(at.saturating_add(0x2c))?,
            }
        } else {
            Section {
                kind,
                offset: self.word_at(at.saturating_add(0x10))?,
                size: self.word_at(at.saturating_add(0x14))?,
                link: self.u32_at(at.saturating_add(0x18))?,
                info: self.u32_at(at.saturating_add(0x1c))?,
            }
        })
    }

    /// The version names the file needs from its shared libraries
    /// (`.gnu.version_r`: `GLIBC_2.34`, `GCC_3.0`, ...), each once.
    pub fn needed_versions(&self) -> Result<Vec<String>, ElfError> {
        let (_, _, shnum) = self.table(false)?;
        if shnum == 0 {
            return Err(ElfError::Malformed(
                "no section headers: the symbol versions it needs cannot be read",
            ));
        }
        let mut names = Vec::new();
        for index in 0..shnum {
            let section = self.section(index)?;
            if section.kind != SHT_GNU_VERNEED {
                continue;
            }
            let strings = self.section(section.link as usize)?;
            let strings = self
                .slice(strings.offset, strings.size)
                .ok_or(ElfError::Malformed(
                    "a string table beyond the end of the file",
                ))?;
            let name = |offset: u32| -> Result<String, ElfError> {
                let rest = strings.get(offset as usize..).ok_or(ElfError::Malformed(
                    "a version name beyond its string table",
                ))?;
                let end = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(ElfError::Malformed("an unterminated version name"))?;
                Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
            };
            let end = section
                .offset
                .checked_add(section.size)
                .ok_or(ElfError::Truncated)?;
            // Verneed entries (`sh_info` of them), each with its Vernaux list.
            let mut entry = section.offset;
            for _ in 0..section.info {
                if entry.checked_add(16).is_none_or(|e| e > end) {
                    return Err(ElfError::Malformed(".gnu.version_r overruns its section"));
                }
                let count = self.u16_at(entry + 2)?;
                let mut aux = entry
                    .checked_add(self.u32_at(entry + 8)? as usize)
                    .ok_or(ElfError::Truncated)?;
                for _ in 0..count {
                    if aux.checked_add(16).is_none_or(|e| e > end) {
                        return Err(ElfError::Malformed(".gnu.version_r overruns its section"));
                    }
                    let version = name(self.u32_at(aux + 8)?)?;
                    if !names.contains(&version) {
                        names.push(version);
                    }
                    let next = self.u32_at(aux + 12)? as usize;
                    if next == 0 {
                        break;
                    }
                    aux = aux.checked_add(next).ok_or(ElfError::Truncated)?;
                }
                let next = self.u32_at(entry + 12)? as usize;
                if next == 0 {
                    break;
                }
                entry = entry.checked_add(next).ok_or(ElfError::Truncated)?;
            }
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        let m = if data == 1 {
            machine.to_le_bytes()
        } else {
            machine.to_be_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn the_running_test_binary_fits_this_machine() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let target = ElfTarget::parse(&exe).unwrap();
        let arch = std::process::Command::new("uname")
            .arg("-m")
            .output()
            .unwrap();
        let arch = String::from_utf8_lossy(&arch.stdout).trim().to_string();
        assert!(target.runs_on(&arch), "{target:?} vs {arch}");
        assert_eq!(target.arch_name(), arch);
    }

    #[test]
    fn machines_match_uname_names() {
        let arm64 = ElfTarget::parse(&header(2, 1, 183)).unwrap();
        assert!(arm64.runs_on("aarch64") && arm64.runs_on("arm64"));
        assert!(!arm64.runs_on("x86_64"));
        assert_eq!(arm64.arch_name(), "aarch64");
        let s390 = ElfTarget::parse(&header(2, 2, 22)).unwrap();
        assert!(s390.runs_on("s390x"));
        assert!(
            !ElfTarget::parse(&header(2, 1, 21))
                .unwrap()
                .runs_on("ppc64")
        );
        assert!(
            ElfTarget::parse(&header(1, 1, 40))
                .unwrap()
                .runs_on("armv7l")
        );
        assert!(!ElfTarget::parse(&header(2, 1, 62)).unwrap().runs_on("mips"));
        // The shell's patterns say the same as runs_on.
        for (class, data, machine) in [(2, 1, 62), (2, 1, 183), (1, 1, 3), (1, 1, 40), (2, 2, 22)] {
            let t = ElfTarget::parse(&header(class, data, machine)).unwrap();
            for pattern in t.uname_patterns() {
                assert!(t.runs_on(&pattern.replace('*', "7l")), "{pattern}");
            }
        }
    }

    #[test]
    fn non_elf_files_are_refused() {
        assert_eq!(ElfTarget::parse(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        assert_eq!(
            ElfTarget::parse(b"\x7fELF\x02\x01"),
            Err(ElfError::Truncated)
        );
        assert_eq!(ElfTarget::parse(&header(3, 1, 62)), Err(ElfError::NotElf));
    }
}
