//! Writing a command: an array of bulk strings.
//!
//! A client sends every command as a RESP array whose items are bulk
//! strings: the command's name, then its arguments, each with its length
//! in front. `SET greeting hello` is three bulk strings:
//!
//! ```text
//! *3\r\n            an array of 3 items
//! $3\r\nSET\r\n      a bulk string of 3 bytes: SET
//! $8\r\ngreeting\r\n a bulk string of 8 bytes: greeting
//! $5\r\nhello\r\n    a bulk string of 5 bytes: hello
//! ```
//!
//! Because every argument carries its length, an argument may contain
//! anything, spaces, CR LF and zero bytes included: nothing is escaped,
//! and Redis never has to search for where an argument ends.

/// Appends the bytes of one command to `out`. Several commands appended
/// one after the other, then written at once, are a pipeline.
pub fn encode_into(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The bytes of one command.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(args));
    encode_into(&mut out, args);
    out
}

/// How many bytes [`encode`] writes for `args`.
pub fn encoded_len(args: &[&[u8]]) -> usize {
    let header = |n: usize| 1 + n.to_string().len() + 2;
    header(args.len())
        + args
            .iter()
            .map(|arg| header(arg.len()) + arg.len() + 2)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_is_three_bulk_strings() {
        assert_eq!(
            encode(&[b"SET", b"greeting", b"hello"]),
            b"*3\r\n$3\r\nSET\r\n$8\r\ngreeting\r\n$5\r\nhello\r\n"
        );
    }

    #[test]
    fn exact_bytes_for_the_commands_the_log_sends() {
        assert_eq!(encode(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&[b"GET", b"rbh:log:last-id"]),
            b"*2\r\n$3\r\nGET\r\n$15\r\nrbh:log:last-id\r\n"
        );
        assert_eq!(
            encode(&[b"XRANGE", b"s", b"5-0", b"+", b"COUNT", b"10"]),
            b"*6\r\n$6\r\nXRANGE\r\n$1\r\ns\r\n$3\r\n5-0\r\n$1\r\n+\r\n$5\r\nCOUNT\r\n$2\r\n10\r\n"
        );
    }

    #[test]
    fn arguments_are_sent_as_they_are() {
        // Empty, binary, CR LF inside, a '$' and a '*': no escaping at all.
        let args: [&[u8]; 4] = [b"", b"\x00\xff", b"a\r\nb", b"$*"];
        assert_eq!(
            encode(&args),
            b"*4\r\n$0\r\n\r\n$2\r\n\x00\xff\r\n$4\r\na\r\nb\r\n$2\r\n$*\r\n"
        );
        let long = vec![b'x'; 1234];
        let bytes = encode(&[&long]);
        assert!(bytes.starts_with(b"*1\r\n$1234\r\nxxx"));
        assert_eq!(bytes.len(), 4 + 7 + 1234 + 2);
    }

    #[test]
    fn commands_appended_make_a_pipeline_and_lengths_are_exact() {
        let mut out = Vec::new();
        encode_into(&mut out, &[b"INCR", b"n"]);
        encode_into(&mut out, &[b"GET", b"n"]);
        assert_eq!(
            out,
            b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*2\r\n$3\r\nGET\r\n$1\r\nn\r\n"
        );
        for args in [&[][..], &[&b"PING"[..]], &[b"SET", b"k", &[7u8; 100]]] {
            assert_eq!(encoded_len(args), encode(args).len());
        }
        assert_eq!(encode(&[]), b"*0\r\n");
    }
}
