import { describe, expect, it } from "vitest";
import { machineFiles, qemuArgs, spawnCommand } from "./command-line.ts";
import { machineArch } from "./machine-arch.ts";

const dir = "/dev/shm/qmt-run/source-abc";

describe("qemuArgs", () => {
  it("aarch64 virt: -cpu after -machine, the shared RAM named as the board's own RAM block", () => {
    const target = machineArch("aarch64");
    const args = qemuArgs({
      name: "destination",
      machineType: target.defaultMachineType,
      cpu: target.cpu("tcg"),
      accel: "tcg",
      exitWithParent: false,
      dir,
      ramFile: `${dir}/guest.ram`,
      ramBlockId: target.ramBlockId,
    });
    expect(args.slice(2, 6)).toEqual(["-machine", "virt", "-cpu", "max"]);
    // Migration matches RAM blocks by name: a source without a backend has mach-virt.ram.
    expect(args).toContain(
      `memory-backend-file,id=mach-virt.ram,size=128M,mem-path=${dir}/guest.ram,share=on`,
    );
    expect(args).toContain("memory-backend=mach-virt.ram");
    expect(target.cpu("kvm")).toBe("host");
    expect(machineArch("x86_64").cpu("tcg")).toBeUndefined();
  });

  it("the defaults: pc, 128 MiB, no devices, QMP on a socket and the serial console in a file", () => {
    expect(qemuArgs({ name: "source", accel: "tcg", exitWithParent: false, dir })).toEqual([
      "-name",
      "source",
      "-machine",
      "pc",
      "-accel",
      "tcg",
      "-m",
      "128M",
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-qmp",
      `unix:${dir}/qmp.sock,server=on,wait=off`,
      "-chardev",
      `file,id=serial0,path=${dir}/serial.log`,
      "-serial",
      "chardev:serial0",
      "-pidfile",
      `${dir}/qemu.pid`,
    ]);
  });

  it("every option in its place: exit-with-parent, shared RAM, incoming, then guest and extra args", () => {
    const args = qemuArgs({
      name: "destination",
      machineType: "pc-i440fx-7.2",
      memoryMiB: 256,
      accel: "kvm",
      exitWithParent: true,
      dir,
      ramFile: `${dir}/guest.ram`,
      incoming: true,
      guestArgs: ["-bios", "bootblock.bin"],
      extraArgs: ["-device", "vfio-pci,host=0000:3b:00.1"],
    });
    expect(args.slice(0, 8)).toEqual([
      "-name",
      "destination",
      "-machine",
      "pc-i440fx-7.2",
      "-accel",
      "kvm",
      "-m",
      "256M",
    ]);
    expect(args.slice(args.indexOf("-pidfile") + 2)).toEqual([
      "-run-with",
      "exit-with-parent=on",
      "-object",
      `memory-backend-file,id=pc.ram,size=256M,mem-path=${dir}/guest.ram,share=on`,
      "-machine",
      "memory-backend=pc.ram",
      "-incoming",
      "defer",
      "-bios",
      "bootblock.bin",
      "-device",
      "vfio-pci,host=0000:3b:00.1",
    ]);
  });

  it("names the same files the machine reads", () => {
    const files = machineFiles(dir);
    const args = qemuArgs({ name: "s", accel: "tcg", exitWithParent: false, dir });
    expect(args).toContain(`unix:${files.qmpSocket},server=on,wait=off`);
    expect(args).toContain(`file,id=serial0,path=${files.serialLog}`);
    expect(args).toContain(files.pidFile);
    expect(files.stderrLog).toBe(`${dir}/stderr.log`);
  });
});

describe("spawnCommand", () => {
  const commandLine = ["/usr/bin/qemu-system-x86_64", "-name", "source"];

  it("runs QEMU under setpriv --pdeathsig SIGKILL when the host has setpriv", () => {
    expect(spawnCommand(commandLine, "/usr/bin/setpriv")).toEqual({
      file: "/usr/bin/setpriv",
      args: ["--pdeathsig", "SIGKILL", "--", ...commandLine],
    });
  });

  it("runs QEMU itself otherwise", () => {
    expect(spawnCommand(commandLine, undefined)).toEqual({
      file: "/usr/bin/qemu-system-x86_64",
      args: ["-name", "source"],
    });
  });
});
