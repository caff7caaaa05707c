//! The command line, read into values: which command, its flags and its help text.
//! Pure (the caller passes the arguments and prints), so every usage rule is tested
//! without running anything: `-h`/`--help` on every command, an unknown flag named as
//! such, a flag without its value named with what it takes.
//! Must not touch: settings semantics (settings.rs), running anything.

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Gateway(Flags),
    Manage(Flags),
    ManageImport(ImportArgs, Flags),
    Check(String),
    Backups(BackupsVerb, Flags),
    Version,
    /// Help text to print on stdout (exit 0).
    Help(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupsVerb {
    List,
    Show(String),
    Rollback(String),
    Unpin,
}

/// `edgegate manage import`: which document goes into which API, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportArgs {
    pub file: String,
    pub api: String,
    pub path: Option<String>,
    pub service_url: Option<String>,
    /// `--query-parameters query`: required query parameters stay query parameters.
    pub query_as_query: bool,
}

/// The settings flags of a command: `--settings FILE`, then `key=value` pairs in the
/// order given (`--set`, and aliases such as `--config FILE` turned into their key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub settings_file: Option<String>,
    pub set: Vec<(String, String)>,
}

/// A usage error: the one line to print before the command's usage (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    pub message: String,
    pub usage: &'static str,
}

pub const USAGE: &str = "usage:
  edgegate gateway [--settings FILE] [--config FILE] [--set key=value]...
  edgegate manage [--listen ADDR] [--db FILE] [--settings FILE] [--set key=value]...
  edgegate manage import --api ID FILE [--path PATH] [--service-url URL] [--db FILE]...
  edgegate check FILE
  edgegate backups list|show VERSION|rollback VERSION|unpin [--settings FILE] [--set key=value]...
  edgegate version

'edgegate COMMAND --help' describes a command.";

pub const GATEWAY_HELP: &str =
    "usage: edgegate gateway [--settings FILE] [--config FILE] [--set key=value]...

Runs the data plane: serves the config document of a local file (config.local.path) or
of a management plane (config.service.endpoint), with versioned backups of each one.

  --settings FILE   settings file: 'key = value' lines, '#' comments
  --config FILE     the config document (same as --set config.local.path=FILE)
  --set key=value   one setting; wins over the file and the environment (EDGEGATE_*)
  -h, --help        this text

Every setting is listed in the README (Settings). Exit codes: 0 stopped cleanly,
1 could not start or failed, 2 usage or settings error.";

pub const MANAGE_HELP: &str =
    "usage: edgegate manage [--listen ADDR] [--db FILE] [--settings FILE] [--set key=value]...

Runs the management plane: the admin API (/admin/, bearer token) and the gateway API
(/gateway/) that federated gateways poll.

  --listen ADDR     address to listen on (manage.listen, default 127.0.0.1:7070);
                    other than loopback it needs TLS (manage.tls.cert, manage.tls.key)
                    or manage.listen.insecure=true
  --db FILE         the SQLite database (manage.db.path)
  --settings FILE   settings file: 'key = value' lines, '#' comments
  --set key=value   one setting; wins over the file and the environment (EDGEGATE_*)
  -h, --help        this text

The admin token comes from manage.admin.token (or EDGEGATE_MANAGE_ADMIN_TOKEN, or
@/path/file); without one, a token is generated next to the database (mode 0600).";

pub const IMPORT_HELP: &str =
    "usage: edgegate manage import --api ID FILE [--path PATH] [--service-url URL]
       [--query-parameters template|query] [--db FILE] [--settings FILE] [--set key=value]...

Imports an OpenAPI 3.0 / 3.1 (JSON or YAML) or Swagger 2.0 (JSON) document into the
management plane's database as API ID, as PUT /admin/apis/ID?import=openapi does: a new
API is created; an existing one gets the document's operations (matched by id, keeping
their policies; operations gone from the document are deleted). Works beside a running
plane, which serves the change to its gateways. Prints what changed.

  --api ID              the API to create or update
  --path PATH           the API's path (a new API is served under its id otherwise)
  --service-url URL     the backend; else the API's current one, else the document's
                        first https (else http) server
  --query-parameters    'template' (default, as APIM): required query parameters become
                        template parameters; 'query': they stay query parameters
  --db FILE             the SQLite database (manage.db.path)
  -h, --help            this text

Exit codes: 0 imported, 1 refused (each problem printed with its JSON pointer), 2 usage.";

pub const CHECK_HELP: &str = "usage: edgegate check FILE

Validates a config document as the gateway would load it and prints every error with
its JSON path (and, in policies, its line and column). Exit 0 when valid, 1 when not.";

pub const BACKUPS_HELP: &str = "usage: edgegate backups list|show VERSION|rollback VERSION|unpin [--settings FILE] [--set key=value]...

Reads and pins versions in the gateway's backup store (config.backup.path).

  list              the stored versions, newest first
  show VERSION      one stored document (VERSION or #SEQ)
  rollback VERSION  pin a version: a running gateway applies it within seconds (SIGHUP
                    in local mode) and keeps it until 'unpin', also across restarts
  unpin             clear the pin: a federated gateway goes back to the plane's config
  -h, --help        this text

'list' and 'show' never write to the store.";

fn usage(message: impl Into<String>, usage: &'static str) -> UsageError {
    UsageError {
        message: message.into(),
        usage,
    }
}

fn is_help(arg: &str) -> bool {
    arg == "-h" || arg == "--help"
}

/// Reads `args` (without the program name).
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some((command, rest)) = args.split_first() else {
        return Err(usage("no command given", USAGE));
    };
    match command.as_str() {
        "gateway" => {
            let aliases = [("--config", "config.local.path", "FILE")];
            flags(rest, &aliases, GATEWAY_HELP)
                .map(|f| f.map_or(Command::Help(GATEWAY_HELP), Command::Gateway))
        }
        "manage" if rest.first().map(String::as_str) == Some("import") => manage_import(&rest[1..]),
        "manage" => {
            let aliases = [
                ("--listen", "manage.listen", "ADDR"),
                ("--db", "manage.db.path", "FILE"),
            ];
            flags(rest, &aliases, MANAGE_HELP)
                .map(|f| f.map_or(Command::Help(MANAGE_HELP), Command::Manage))
        }
        "check" => match rest {
            [a] if is_help(a) => Ok(Command::Help(CHECK_HELP)),
            [a] if a.starts_with('-') => Err(usage(format!("unknown option '{a}'"), CHECK_HELP)),
            [path] => Ok(Command::Check(path.clone())),
            _ => Err(usage("check takes exactly one FILE", CHECK_HELP)),
        },
        "backups" => backups(rest),
        "version" | "--version" | "-V" => Ok(Command::Version),
        "help" | "--help" | "-h" => Ok(Command::Help(match rest.first().map(String::as_str) {
            Some("gateway") => GATEWAY_HELP,
            Some("manage") => MANAGE_HELP,
            Some("check") => CHECK_HELP,
            Some("backups") => BACKUPS_HELP,
            _ => USAGE,
        })),
        other => Err(usage(format!("unknown command '{other}'"), USAGE)),
    }
}

fn manage_import(args: &[String]) -> Result<Command, UsageError> {
    let mut import = ImportArgs::default();
    let mut rest = Vec::new();
    let mut file = None;
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if is_help(flag) {
            return Ok(Command::Help(IMPORT_HELP));
        }
        let own = matches!(
            flag,
            "--api" | "--path" | "--service-url" | "--query-parameters"
        );
        if own {
            let Some(value) = args.get(i + 1) else {
                return Err(usage(format!("{flag} needs a value"), IMPORT_HELP));
            };
            match flag {
                "--api" => import.api = value.clone(),
                "--path" => import.path = Some(value.clone()),
                "--service-url" => import.service_url = Some(value.clone()),
                _ => {
                    import.query_as_query = match value.as_str() {
                        "query" => true,
                        "template" => false,
                        _ => {
                            return Err(usage(
                                "--query-parameters takes template or query",
                                IMPORT_HELP,
                            ))
                        }
                    }
                }
            }
            i += 2;
        } else if !flag.starts_with('-')
            && file.is_none()
            && !rest.last().is_some_and(|f: &String| f.starts_with("--"))
        {
            file = Some(flag.to_string());
            i += 1;
        } else {
            rest.push(args[i].clone());
            i += 1;
        }
    }
    if import.api.is_empty() {
        return Err(usage("manage import needs --api ID", IMPORT_HELP));
    }
    import.file =
        file.ok_or_else(|| usage("manage import needs the document's FILE", IMPORT_HELP))?;
    let parsed = flags(&rest, &[("--db", "manage.db.path", "FILE")], IMPORT_HELP)?;
    Ok(parsed.map_or(Command::Help(IMPORT_HELP), |f| {
        Command::ManageImport(import, f)
    }))
}

fn backups(args: &[String]) -> Result<Command, UsageError> {
    if args.iter().any(|a| is_help(a)) {
        return Ok(Command::Help(BACKUPS_HELP));
    }
    let needs_version = |verb: &str| {
        usage(
            format!("backups {verb} needs a VERSION (or #SEQ)"),
            BACKUPS_HELP,
        )
    };
    let (verb, rest) = match args {
        [v, rest @ ..] if v == "list" => (BackupsVerb::List, rest),
        [v, rest @ ..] if v == "unpin" => (BackupsVerb::Unpin, rest),
        [v, version, rest @ ..] if v == "show" && !version.starts_with("--") => {
            (BackupsVerb::Show(version.clone()), rest)
        }
        [v, version, rest @ ..] if v == "rollback" && !version.starts_with("--") => {
            (BackupsVerb::Rollback(version.clone()), rest)
        }
        [v, ..] if v == "show" || v == "rollback" => return Err(needs_version(v)),
        [v, ..] => {
            return Err(usage(
                format!("unknown backups command '{v}': expected list, show, rollback or unpin"),
                BACKUPS_HELP,
            ))
        }
        [] => {
            return Err(usage(
                "backups needs list, show, rollback or unpin",
                BACKUPS_HELP,
            ))
        }
    };
    let parsed = flags(rest, &[], BACKUPS_HELP)?;
    Ok(parsed.map_or(Command::Help(BACKUPS_HELP), |f| Command::Backups(verb, f)))
}

/// `--settings FILE`, `--set key=value` and `aliases` (flag, key, what its value is);
/// `Ok(None)` when help was asked for.
fn flags(
    args: &[String],
    aliases: &[(&str, &str, &str)],
    help: &'static str,
) -> Result<Option<Flags>, UsageError> {
    let mut out = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if is_help(flag) {
            return Ok(None);
        }
        let takes = match flag {
            "--settings" => "FILE",
            "--set" => "key=value",
            _ => match aliases.iter().find(|(f, _, _)| *f == flag) {
                Some((_, _, what)) => what,
                None if flag.starts_with('-') => {
                    return Err(usage(format!("unknown option '{flag}'"), help))
                }
                None => return Err(usage(format!("unexpected argument '{flag}'"), help)),
            },
        };
        let Some(value) = args.get(i + 1).filter(|v| !is_help(v)) else {
            return Err(usage(format!("{flag} needs a value ({takes})"), help));
        };
        match flag {
            "--settings" => out.settings_file = Some(value.clone()),
            "--set" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| usage(format!("--set {value}: expected key=value"), help))?;
                out.set.push((k.trim().to_string(), v.to_string()));
            }
            _ => {
                if let Some((_, key, _)) = aliases.iter().find(|(f, _, _)| *f == flag) {
                    out.set.push(((*key).to_string(), value.clone()));
                }
            }
        }
        i += 2;
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Command, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    fn message(line: &str) -> String {
        run(line).unwrap_err().message
    }

    #[test]
    fn every_command_has_help() {
        for (line, text) in [
            ("gateway --help", GATEWAY_HELP),
            ("gateway -h", GATEWAY_HELP),
            ("gateway --config x.json --help", GATEWAY_HELP),
            ("manage -h", MANAGE_HELP),
            ("check --help", CHECK_HELP),
            ("backups --help", BACKUPS_HELP),
            ("backups list -h", BACKUPS_HELP),
            ("help", USAGE),
            ("--help", USAGE),
            ("help manage", MANAGE_HELP),
        ] {
            assert_eq!(run(line), Ok(Command::Help(text)), "{line}");
        }
    }

    #[test]
    fn flags_become_settings_in_order() {
        let Ok(Command::Gateway(f)) =
            run("gateway --settings s.conf --config c.json --set a.b=1 --set a.b=2=3")
        else {
            panic!()
        };
        assert_eq!(f.settings_file.as_deref(), Some("s.conf"));
        assert_eq!(
            f.set,
            vec![
                ("config.local.path".into(), "c.json".into()),
                ("a.b".into(), "1".into()),
                ("a.b".into(), "2=3".into())
            ]
        );
        assert_eq!(
            run("backups rollback #3 --set config.backup.path=b.db"),
            Ok(Command::Backups(
                BackupsVerb::Rollback("#3".into()),
                Flags {
                    settings_file: None,
                    set: vec![("config.backup.path".into(), "b.db".into())]
                }
            ))
        );
    }

    #[test]
    fn mistakes_are_named_for_what_they_are() {
        assert_eq!(message("gateway --bogus"), "unknown option '--bogus'");
        assert_eq!(message("gateway --bogus x"), "unknown option '--bogus'");
        assert_eq!(message("gateway --config"), "--config needs a value (FILE)");
        assert_eq!(message("manage --listen"), "--listen needs a value (ADDR)");
        assert_eq!(message("gateway --set"), "--set needs a value (key=value)");
        assert_eq!(
            message("gateway --set nokey"),
            "--set nokey: expected key=value"
        );
        assert_eq!(message("gateway stray"), "unexpected argument 'stray'");
        assert_eq!(message("check"), "check takes exactly one FILE");
        assert_eq!(message("check --strict"), "unknown option '--strict'");
        assert_eq!(
            message("backups show"),
            "backups show needs a VERSION (or #SEQ)"
        );
        assert_eq!(
            message("backups prune"),
            "unknown backups command 'prune': expected list, show, rollback or unpin"
        );
        assert_eq!(message("frobnicate"), "unknown command 'frobnicate'");
        assert_eq!(message(""), "no command given");
        assert_eq!(run("gateway --config").unwrap_err().usage, GATEWAY_HELP);
    }
}
