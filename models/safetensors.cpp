// safetensors header parsing (layout in safetensors.h); nothing is trusted.
#include "models/safetensors.h"

#include <stdexcept>
#include <string_view>

namespace nibble {

namespace {

using json = nlohmann::json;

uint64_t read_length(const MappedFile& file) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | file.data()[i];  // little-endian
    return n;
}

}  // namespace

uint64_t SafetensorsEntry::n_elements() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;  // bounded: checked against the bytes on parse
    return n;
}

size_t safetensors_dtype_size(const std::string& dtype) {
    if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
    if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
    if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
    if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
    return 0;
}

bool looks_like_safetensors(const MappedFile& file) {
    if (file.size() < 10) return false;
    const uint64_t n = read_length(file);
    return n >= 2 && n <= file.size() - 8 && n <= SafetensorsFile::kMaxHeaderBytes &&
           file.data()[8] == '{';
}

SafetensorsFile SafetensorsFile::parse(const std::shared_ptr<MappedFile>& file) {
    const std::string& path = file->path();
    auto fail = [&](const std::string& what) -> void {
        throw std::runtime_error(path + ": " + what);
    };
    SafetensorsFile st;
    st.file_ = file;
    if (file->size() < 8) fail("too small for a safetensors header");
    const uint64_t n = read_length(*file);
    if (n > kMaxHeaderBytes || n > file->size() - 8) {
        fail("safetensors header length " + std::to_string(n) + " does not fit in the file (" +
             std::to_string(file->size()) + " bytes)");
    }
    st.header_bytes_ = n;
    json header;
    try {
        const auto* text = reinterpret_cast<const char*>(file->data() + 8);
        header = json::parse(std::string_view(text, size_t(n)));
    } catch (const json::parse_error& e) {
        // Not e.what(): nlohmann quotes the raw bytes around the error.
        fail("safetensors header is not valid JSON (syntax error at byte " +
             std::to_string(e.byte) + " of " + std::to_string(n) + ")");
    } catch (const json::exception& e) {
        fail("safetensors header is not valid JSON (error " + std::to_string(e.id) + ")");
    }
    if (!header.is_object()) fail("safetensors header is not a JSON object");
    const uint64_t data_size = st.data_bytes();
    for (const auto& [name, value] : header.items()) {
        if (name == "__metadata__") {
            if (!value.is_object()) fail("__metadata__ is not a JSON object");
            st.metadata_ = value;
            continue;
        }
        const std::string where = "tensor " + name;
        if (!value.is_object()) fail(where + " is not a JSON object");
        SafetensorsEntry e;
        const auto dtype = value.find("dtype");
        if (dtype == value.end() || !dtype->is_string()) fail(where + ": no string dtype");
        e.dtype = dtype->get<std::string>();
        const auto shape = value.find("shape");
        if (shape == value.end() || !shape->is_array()) fail(where + ": shape is not an array");
        for (const json& d : *shape) {
            if (!d.is_number_unsigned())
                fail(where + ": shape holds a value that is not a non-negative integer");
            e.shape.push_back(d.get<uint64_t>());
        }
        const auto offsets = value.find("data_offsets");
        if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
            !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
            fail(where + ": data_offsets is not [begin, end] of non-negative integers");
        }
        e.begin = (*offsets)[0].get<uint64_t>();
        e.end = (*offsets)[1].get<uint64_t>();
        if (e.begin > e.end || e.end > data_size) {
            fail(where + ": data_offsets [" + std::to_string(e.begin) + ", " +
                 std::to_string(e.end) + "] outside the data section of " +
                 std::to_string(data_size) + " bytes (truncated file?)");
        }
        e.data = st.data_section() + e.begin;
        st.tensors_.emplace(name, std::move(e));
    }
    return st;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
    const auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace nibble
