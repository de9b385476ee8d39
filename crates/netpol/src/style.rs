//! Colour: only on a terminal, never when NO_COLOR is set (<https://no-color.org>).

use std::io::IsTerminal;

pub fn color_enabled(is_tty: bool) -> bool {
    is_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn stdout_color() -> bool {
    color_enabled(std::io::stdout().is_terminal())
}

/// Colours verdict words in a rendered explanation when stdout is a colour terminal.
pub fn paint_explanation(text: &str) -> String {
    if !stdout_color() {
        return text.to_string();
    }
    let green = |s: &str| format!("\x1b[32m{s}\x1b[0m");
    let red = |s: &str| format!("\x1b[1;31m{s}\x1b[0m");
    text.lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("ALLOW") {
                format!("{}{rest}", green("ALLOW"))
            } else if let Some(rest) = l.strip_prefix("DENY") {
                format!("{}{rest}", red("DENY"))
            } else {
                l.replace("DENIED", &red("DENIED"))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
