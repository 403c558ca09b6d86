//! Which machines a binary runs on, read from its ELF header, and whether a
//! host (`uname -sm`) is one of them.

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
