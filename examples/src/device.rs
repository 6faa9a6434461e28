//! Finding the cpal device the user asked for: the host's default, or one
//! whose id or name matches `--device NAME`.

use cpal::traits::{DeviceTrait, HostTrait};

/// Which way the device carries sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Capture.
    Input,
    /// Playback.
    Output,
}

/// The default device for `direction`, or the one named `name`.
pub fn find(direction: Direction, name: Option<&str>) -> Result<cpal::Device, String> {
    let host = cpal::default_host();
    let what = match direction {
        Direction::Input => "input",
        Direction::Output => "output",
    };
    let Some(name) = name else {
        let d = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return d.ok_or(format!("no default {what} device"));
    };
    let devices = match direction {
        Direction::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        Direction::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    }
    .map_err(|e| format!("listing {what} devices: {e}"))?;
    devices
        .into_iter()
        .find(|d| {
            d.id().is_ok_and(|id| id.1 == name)
                || d.description().is_ok_and(|desc| desc.name() == name)
        })
        .ok_or(format!("no {what} device {name}"))
}
