// One row of the VFIO host probe's table.

export type CheckStatus = "ok" | "warn" | "fail";

export interface VfioCheck {
  /** "host", "source", "destination", or "qemu 10.0.2". */
  scope: string;
  /** The device the check is about, when it is about one. */
  device?: string;
  check: string;
  status: CheckStatus;
  detail: string;
  /** Shell commands (or a setting) that fix a failed check. */
  fix?: string;
}
