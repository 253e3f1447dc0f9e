//! `greet NAME...`: one greeting a line; `greet --file PATH`: greets the names of a list.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names = match args.as_slice() {
        [flag, path] if flag == "--file" => match std::fs::read_to_string(path) {
            Ok(text) => nstest_dropin::names(&text),
            Err(e) => {
                eprintln!("greet: {path}: {e}");
                std::process::exit(2);
            }
        },
        [] => {
            eprintln!("usage: greet NAME... | greet --file PATH");
            std::process::exit(64);
        }
        names => names.to_vec(),
    };
    for n in names {
        println!("{}", nstest_dropin::greeting(&n));
    }
}
