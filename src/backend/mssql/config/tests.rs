use super::*;

fn url(s: &str) -> ConnectSpec {
    parse(s, StringForm::Url, "K").unwrap()
}

#[test]
fn sqlalchemy_pyodbc_url_ignores_driver() {
    let s = url("mssql+pyodbc://user:p%40ss@survey-server:1433/survey_hub?driver=ODBC+Driver+17+for+SQL+Server&TrustServerCertificate=yes&Encrypt=no");
    assert_eq!(s.host.as_deref(), Some("survey-server"));
    assert_eq!(s.port, Some(1433));
    assert_eq!(s.password.as_deref(), Some("p@ss"));
    assert_eq!(s.database.as_deref(), Some("survey_hub"));
    assert!(flag(&s, "trust_server_certificate", "K").unwrap());
    assert_eq!(tls_of(&s, "K").unwrap().encrypt, Encrypt::LoginOnly);
    assert!(s.option("driver").is_none());
}

#[test]
fn named_instance_in_url() {
    let s = url("mssql://u:p@db%5CSQLEXPRESS/x");
    assert_eq!(s.host.as_deref(), Some("db"));
    assert_eq!(s.option("instance"), Some("SQLEXPRESS"));
}

#[test]
fn jdbc_form() {
    let s = parse(
        "jdbc:sqlserver://db.example\\inst:1444;databaseName=hub;user=sa;password={p;w};encrypt=true;trustServerCertificate=true",
        StringForm::Jdbc,
        "K",
    )
    .unwrap();
    assert_eq!(s.host.as_deref(), Some("db.example"));
    assert_eq!(s.port, Some(1444));
    assert_eq!(s.option("instance"), Some("inst"));
    assert_eq!(s.database.as_deref(), Some("hub"));
    assert_eq!(s.password.as_deref(), Some("p;w"));
    let tls = tls_of(&s, "K").unwrap();
    assert_eq!(
        (tls.encrypt, tls.verify),
        (Encrypt::Required, Verify::Not { asked: true })
    );
}

#[test]
fn ado_net_form() {
    let s = parse(
        "Server=tcp:host,1433;Initial Catalog=db;User Id=u;Password='it''s';Encrypt=True;TrustServerCertificate=False;Application Name=rpa1",
        StringForm::AdoNet,
        "K",
    )
    .unwrap();
    assert_eq!((s.host.as_deref(), s.port), (Some("host"), Some(1433)));
    assert_eq!(s.password.as_deref(), Some("it's"));
    assert_eq!(s.option("application_name"), Some("rpa1"));
    assert!(!flag(&s, "trust_server_certificate", "K").unwrap());
    assert!(!format!("{s:?}").contains("it's"));
}

#[test]
fn unknown_refused_and_conflicting_options_are_errors() {
    let unknown = parse(
        "mssql://h/db?colour=blue",
        StringForm::Url,
        "X_CONNECTION_STRING",
    )
    .unwrap_err();
    assert!(unknown.message.contains("colour") && unknown.message.contains("X_CONNECTION_STRING"));
    let refused = parse("Server=h;Integrated Security=SSPI", StringForm::AdoNet, "K").unwrap_err();
    assert!(
        refused.message.contains("Integrated Security"),
        "{}",
        refused.message
    );
    let pool = parse("Server=h;Max Pool Size=5", StringForm::AdoNet, "K").unwrap_err();
    assert!(pool.message.contains("POOL_SIZE"));
    let conflict = parse("mssql://h/db?encrypt=yes&Encrypt=no", StringForm::Url, "K").unwrap_err();
    assert!(conflict.message.contains("twice"), "{}", conflict.message);
    assert!(parse("mssql://h/db?encrypt=maybe", StringForm::Url, "K").is_err());
    assert!(parse("mssql://h/db?encrypt=strict", StringForm::Url, "K").is_err());
}

fn tls(conn: &str) -> Tls {
    let form = (super::super::KIND.detect)(conn).expect("a SQL Server connection string");
    tls_of(&parse(conn, form, "K").unwrap(), "K").unwrap()
}

#[test]
fn tls_follows_the_driver_the_string_names() {
    use Encrypt::*;
    let not = Verify::Not { asked: false };
    let cases: &[(&str, Encrypt, Verify)] = &[
        // ODBC Driver 17: Encrypt=no by default, login-only TLS, never verified.
        ("mssql+pyodbc://u:p@h/db?driver=ODBC+Driver+17+for+SQL+Server", LoginOnly, not.clone()),
        ("mssql+pyodbc://u:p@h/db?driver=ODBC+Driver+17+for+SQL+Server&Encrypt=yes", Required, Verify::SystemRoots),
        ("mssql+pyodbc://u:p@h/db?driver=ODBC+Driver+17+for+SQL+Server&Encrypt=yes&TrustServerCertificate=yes", Required, Verify::Not { asked: true }),
        ("mssql+pyodbc://u:p@h/db", LoginOnly, not.clone()),
        // ODBC Driver 18: Encrypt=yes (mandatory) by default, verified.
        ("mssql+pyodbc://u:p@h/db?driver=ODBC+Driver+18+for+SQL+Server", Required, Verify::SystemRoots),
        ("mssql+pyodbc://u:p@h/db?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=no", LoginOnly, not.clone()),
        ("mssql+pyodbc://u:p@h/db?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes", Required, Verify::Not { asked: true }),
        // FreeTDS (pymssql, or the FreeTDS ODBC driver): request TLS, verify only with a CA file.
        ("mssql+pymssql://u:p@h:1433/db", Preferred, not.clone()),
        ("mssql+pyodbc://u:p@h/db?driver=FreeTDS", Preferred, not.clone()),
        ("mssql+pymssql://u:p@h/db?ca_file=/ca.pem", Preferred, Verify::CaFile("/ca.pem".into())),
        // dbflow's own URL.
        ("mssql://u:p@h/db", Preferred, Verify::SystemRoots),
        ("mssql://u:p@h/db?encrypt=off", LoginOnly, not.clone()),
        ("mssql://u:p@h/db?encrypt=disable", Disabled, not.clone()),
        ("mssql://u:p@h/db?encrypt=yes&ca_file=/ca.pem", Required, Verify::CaFile("/ca.pem".into())),
        // ADO.NET (Microsoft.Data.SqlClient 4+) and JDBC (mssql-jdbc 10.2+): Encrypt=true by default.
        ("Server=h;Database=db;User Id=u;Password=p", Required, Verify::SystemRoots),
        ("Server=h;Database=db;User Id=u;Password=p;Encrypt=False", LoginOnly, not.clone()),
        ("Server=h;Database=db;User Id=u;Password=p;TrustServerCertificate=True", Required, Verify::Not { asked: true }),
        ("jdbc:sqlserver://h:1433;databaseName=db;user=u;password=p", Required, Verify::SystemRoots),
        ("jdbc:sqlserver://h:1433;databaseName=db;user=u;password=p;encrypt=false", LoginOnly, not),
    ];
    for (conn, encrypt, verify) in cases {
        let got = tls(conn);
        assert_eq!((got.encrypt, &got.verify), (*encrypt, verify), "{conn}");
    }
}

#[test]
fn missing_server_is_an_error() {
    assert!(parse("Database=x;User Id=u", StringForm::AdoNet, "K").is_err());
}

#[test]
fn local_aliases() {
    let s = parse("Server=(local);Database=x", StringForm::AdoNet, "K").unwrap();
    assert_eq!(s.host.as_deref(), Some("localhost"));
}

#[test]
fn failover_partner_in_every_form() {
    let shown =
        |s: &ConnectSpec| -> Vec<String> { s.endpoints().iter().map(|e| e.to_string()).collect() };
    let ado = "Server=tcp:db1,1433;Failover Partner=db2,1434;Database=x;User Id=u;Password=p;\
               MultiSubnetFailover=Yes";
    let s = parse(ado, StringForm::AdoNet, "K").unwrap();
    assert_eq!(shown(&s), ["db1:1433", "db2:1434"]);
    assert_eq!(s.option("multi_subnet_failover"), Some("Yes"));
    let jdbc = "jdbc:sqlserver://db1:1433;databaseName=x;failoverPartner=db2;user=u;password=p";
    let s = parse(jdbc, StringForm::Jdbc, "K").unwrap();
    assert_eq!(shown(&s), ["db1:1433", "db2"]);
    let s = url("mssql://u:p@db1:1433/x?failover_partner=db2,1500");
    assert_eq!(shown(&s), ["db1:1433", "db2:1500"]);
    assert!(
        s.redacted().contains("db1:1433,db2:1500"),
        "{}",
        s.redacted()
    );

    let e = parse("mssql://u:p@db1,db2/x", StringForm::Url, "K").unwrap_err();
    assert!(
        e.message.contains("failover_partner=host,port"),
        "{}",
        e.message
    );
    let e = parse(
        "Server=db1\\a;Failover_Partner=db2\\b;User Id=u",
        StringForm::AdoNet,
        "K",
    )
    .unwrap_err();
    assert!(e.message.contains("instance 'b'"), "{}", e.message);
    let same = parse(
        "Server=db1\\a;Failover_Partner=db2\\a;User Id=u",
        StringForm::AdoNet,
        "K",
    )
    .unwrap();
    assert_eq!(shown(&same), ["db1", "db2"]);
}
